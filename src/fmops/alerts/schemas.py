"""What an alert rule is made of, as the API and the CLI send it; checked before it is stored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from fmops.alerts.rules import AlertMetric
from fmops.errors import UserError
from fmops.numbers import NumbersOnly

MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 7 * 86_400


RuleName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\- ]*$")
]
Value = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Operator = Literal[">", ">=", "<", "<="]
Threshold = Annotated[float, Field(allow_inf_nan=False), NumbersOnly]
Window = Annotated[int, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS), NumbersOnly]
MinCount = Annotated[int, Field(ge=0, le=1_000_000_000), NumbersOnly]
WebhookUrl = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class RuleFilters(BaseModel):
    """Which spans the rule's series covers; omitted fields cover everything."""

    model_config = ConfigDict(extra="forbid")

    model: Value | None = None
    provider: Value | None = None
    endpoint: Value | None = None
    prompt_name: Value | None = None
    prompt_version: Annotated[int, Field(ge=1, le=2**31 - 1), NumbersOnly] | None = None
    variant: Value | None = None
    key_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    user: Value | None = None
    score: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="The score name whose mean `score_mean` watches"
    )

    policy: Annotated[str, StringConstraints(min_length=1, max_length=300)] | None = Field(
        None, description="The guardrail policy (its label) whose block rate `guardrail_block_rate` watches"
    )

    def dimensions(self) -> dict[str, Any]:
        """The span filters, for the stats query (the score and policy names are not ones)."""
        return self.model_dump(exclude_none=True, exclude={"score", "policy"})


class AlertRuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RuleName
    metric: AlertMetric
    operator: Operator = Field(
        description="Fires when `metric operator threshold`, e.g. latency_p95_ms > 800"
    )
    threshold: Threshold = Field(description="Fractions (error_rate, shares, rates) are between 0 and 1")
    window_seconds: Window = Field(300, description="The metric is computed over this many seconds up to now")
    filters: RuleFilters = Field(default_factory=RuleFilters)
    min_count: MinCount = Field(
        1,
        description="Fewer samples (requests, thumbs, scores) in the window give no verdict; use 0 to watch"
        " for traffic stopping",
    )
    webhook_url: WebhookUrl | None = Field(
        None, description="Receives a JSON POST when the rule fires or resolves"
    )
    enabled: StrictBool = True


class AlertRuleUpdate(BaseModel):
    """Only the fields sent change; `webhook_url: null` removes the webhook.

    The other fields may be left out but not sent as null (`SkipJsonSchema` keeps null out of the
    published schema; `changes` refuses it with a message).
    """

    model_config = ConfigDict(extra="forbid")

    name: RuleName | SkipJsonSchema[None] = None
    metric: AlertMetric | SkipJsonSchema[None] = None
    operator: Operator | SkipJsonSchema[None] = None
    threshold: Threshold | SkipJsonSchema[None] = None
    window_seconds: Window | SkipJsonSchema[None] = None
    filters: RuleFilters | SkipJsonSchema[None] = None
    min_count: MinCount | SkipJsonSchema[None] = None
    webhook_url: WebhookUrl | None = None
    enabled: StrictBool | SkipJsonSchema[None] = None

    def changes(self) -> dict[str, Any]:
        """The fields sent, as stored values; a null other than webhook_url's is refused."""
        sent = self.model_dump(include=self.model_fields_set)
        nulls = sorted(name for name, value in sent.items() if value is None and name != "webhook_url")
        if nulls:
            raise UserError(f"{nulls[0]} cannot be null; leave it out to keep its value", param=nulls[0])
        return sent
