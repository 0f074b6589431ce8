"""What an evaluator rule is made of, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from fmops.numbers import NumbersOnly

RuleName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
]
ScorerName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
SampleRate = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False), NumbersOnly]
ModelAlias = Annotated[str, StringConstraints(min_length=1, max_length=100)]
EndpointName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class RuleCreate(_Body):
    name: RuleName = Field(description="Also the name of the scores it writes on traces")
    scorer: ScorerName = Field(description="A scorer from GET /api/scorers: json, regex, judge, ...")
    config: dict[str, Any] = Field(default_factory=dict, description="The scorer's config (see its schema)")
    model: ModelAlias | None = Field(None, description="Only calls to this model; any when absent")
    endpoint: EndpointName | None = Field(
        None, description="Only calls through this endpoint; any when absent"
    )
    sample_rate: SampleRate = Field(1.0, description="Share of matching traces scored, in (0, 1]")
    enabled: StrictBool = True


class RuleUpdate(_Body):
    """Only the fields sent change; `model` or `endpoint` null means any. The other fields cannot be
    null (their schema says so): leave them out to keep them."""

    name: RuleName | SkipJsonSchema[None] = None
    scorer: ScorerName | SkipJsonSchema[None] = None
    config: dict[str, Any] | SkipJsonSchema[None] = None
    model: ModelAlias | None = None
    endpoint: EndpointName | None = None
    sample_rate: SampleRate | SkipJsonSchema[None] = None
    enabled: StrictBool | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_nulls(self) -> RuleUpdate:
        for name in ("name", "scorer", "config", "sample_rate", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}
