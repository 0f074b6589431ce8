"""What an endpoint is made of, as written in its YAML/JSON spec and stored in `Endpoint.config`.

```yaml
name: support-bot
prompt: support          # optional; `label: production` by default, or `version: 3`
model: smollm2           # optional when the prompt version names one
params: {temperature: 0}
guardrails:
  - {on: input, scorer: regex, config: {pattern: "(?i)ignore previous"}, expect: fail}
cache: {ttl: 300}
fallbacks: [other-model]
sticky: user             # user | session | key
variants:
  - {name: a, weight: 1, label: production}
  - {name: b, weight: 1, version: 4, model: other-model}
access: {roles: [annotator], users: [alice]}   # optional: who may call it (absent: everyone)
fewshot: {dataset: tickets@3, k: 3}            # optional: similar examples in each call (fmops.fewshot)
```

The schema checks the shape; `EndpointService` checks what needs the database (the prompt, its
labels and versions, the models, the guardrails' scorers).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from fmops.auth import Role
from fmops.auth.audience import SOMEONE_SCHEMA
from fmops.errors import UserError
from fmops.fewshot.schemas import FewshotSpec
from fmops.gateway.schemas import CacheOption, ChatCompletionRequest
from fmops.numbers import NumbersOnly

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
EndpointName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
PromptName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
VariantName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
GuardrailName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
ModelAlias = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Version = Annotated[int, Field(ge=1, le=2**31 - 1), NumbersOnly]
Weight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False), NumbersOnly]
DEFAULT_LABEL = "production"

# Chat parameters a prompt, an endpoint or a variant may fix. What shapes delivery (stream), who
# asks (user, metadata) or fmops' own routing (cache, timeout, fallbacks) is not a model parameter.
NOT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "variables",
        "cache",
        "timeout",
        "fallbacks",
    }
)
PARAMS = frozenset(ChatCompletionRequest.model_fields) - NOT_PARAMS


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params if each is an OpenAI chat parameter with a valid value; a ValueError naming it."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise ValueError(f"unknown chat parameter {unknown[0]!r}; known: {', '.join(sorted(PARAMS))}")
    try:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [], **params})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    return params


Params = Annotated[dict[str, Any], Field(max_length=50)]
M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any) -> M:
    """`model` from `data`; a UserError (400) naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"{where + ': ' if where else ''}{message}", param=where or None) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class GuardrailSpec(_Strict):
    """A scorer run on the input before the call, or on the output after it; a failing check blocks."""

    on: Literal["input", "output"] = Field(description="input: the caller's messages and variables")
    scorer: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="A cheap scorer (see GET /api/scorers): regex, contains, length, json, json_schema"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The scorer's config")
    expect: Literal["pass", "fail"] = Field(
        "pass", description="fail: block when the scorer passes (e.g. a regex that finds an injection)"
    )
    name: GuardrailName | None = Field(None, description="Named in the error when it blocks")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; the spec means the word.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @property
    def label(self) -> str:
        return self.name or f"{self.on}-{self.scorer}"


class VariantSpec(_Strict):
    """One arm of an A/B test: a prompt version (or label) and/or model and params of its own."""

    name: VariantName
    weight: Weight = Field(1.0, description="Share of traffic, relative to the other variants")
    version: Version | None = None
    label: LabelName | None = None
    model: ModelAlias | None = None
    params: Params = Field(default_factory=dict)

    @field_validator("label")
    @classmethod
    def _one_pin(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("version") is not None:
            raise ValueError("give version or label, not both")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_params(value)


UserName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AccessSpec(_Strict):
    """Who may call the endpoint: roles (each covers those above it) and/or users by name.
    Engineers and admins always may (fmops.auth.audience, the rule assistants use too)."""

    # At least one role or user: the schema says it too (the validator below words the 400).
    model_config = ConfigDict(json_schema_extra=SOMEONE_SCHEMA)

    roles: list[Role] = Field(
        default_factory=list,
        max_length=len(Role),
        description="Roles that may call it; a role covers those above it (consumer: everyone)",
    )
    users: list[UserName] = Field(
        default_factory=list, max_length=1000, description="People (by user name) who may call it"
    )

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: list[Role]) -> list[Role]:
        return sorted(set(value), key=lambda r: r.rank)

    @field_validator("users")
    @classmethod
    def _unique_users(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _someone(self) -> AccessSpec:
        if not self.roles and not self.users:
            raise ValueError(
                "say who may call it: roles (engineer: engineers and admins only) and/or users by "
                "name; leave access out (or send null) to let every role call it"
            )
        return self


class EndpointConfig(_Strict):
    """The deployment an endpoint serves: stored as JSON in `Endpoint.config`."""

    prompt: PromptName | None = Field(None, description="The prompt it renders; none for a bare model")
    label: LabelName | None = Field(None, description="Which version of the prompt (default production)")
    version: Version | None = Field(None, description="A fixed version instead of a label")
    model: ModelAlias | None = Field(None, description="Default: the prompt version's model")
    params: Params = Field(default_factory=dict, description="Over the prompt version's params")
    guardrails: list[GuardrailSpec] = Field(default_factory=list, max_length=20)
    cache: CacheOption | None = Field(None, description="Cache identical calls for `ttl` seconds")
    fallbacks: list[ModelAlias] = Field(default_factory=list, max_length=10)
    sticky: Literal["user", "session", "key"] = Field(
        "user", description="What variant assignment sticks to (the API key when absent)"
    )
    variants: list[VariantSpec] = Field(default_factory=list, max_length=20)
    access: AccessSpec | None = Field(
        None, description="Who may call it (roles and/or users); absent: every role"
    )
    fewshot: FewshotSpec | None = Field(
        None, description="Insert the k most similar examples of a dataset version into each call"
    )

    # Field validators (not one model validator), so each error names its field. Fields are
    # validated in the order declared: `prompt` is known when `label` is checked, and so on.
    @field_validator("label", "version")
    @classmethod
    def _pin(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if info.data.get("prompt") is None:
            raise ValueError(f"{info.field_name} chooses a version of `prompt`; set prompt too")
        if info.field_name == "version" and info.data.get("label") is not None:
            raise ValueError("give label or version, not both")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_params(value)

    @field_validator("guardrails")
    @classmethod
    def _guardrail_names(cls, value: list[GuardrailSpec]) -> list[GuardrailSpec]:
        names = [g.label for g in value]
        if len(set(names)) != len(names):
            raise ValueError("guardrail names must be unique (name them with `name:`)")
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[VariantSpec], info: ValidationInfo) -> list[VariantSpec]:
        if not value:
            return value
        if info.data.get("prompt") is None and any(
            v.label is not None or v.version is not None for v in value
        ):
            raise ValueError("a variant's label or version chooses a version of `prompt`; set prompt too")
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if math.fsum(v.weight for v in value) <= 0:
            raise ValueError("variant weights sum to 0; at least one weight must be positive")
        return value

    @model_validator(mode="after")
    def _default_label(self) -> EndpointConfig:
        if self.prompt is not None and self.version is None and self.label is None:
            self.label = DEFAULT_LABEL
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class EndpointSpec(EndpointConfig):
    """A new endpoint: its name and description, and its deployment."""

    name: EndpointName = Field(description="What callers send as `model`; not a model alias")
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    enabled: StrictBool = True

    def config(self) -> EndpointConfig:
        return EndpointConfig.model_validate(self.model_dump(exclude={"name", "description", "enabled"}))


CONFIG_FIELDS = frozenset(EndpointConfig.model_fields)


class EndpointUpdate(_Strict):
    """Only the fields sent change; null clears an optional field (prompt, model, cache, ...)."""

    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    enabled: StrictBool | SkipJsonSchema[None] = None
    prompt: PromptName | None = None
    label: LabelName | None = None
    version: Version | None = None
    model: ModelAlias | None = None
    params: Params | SkipJsonSchema[None] = None
    guardrails: Annotated[list[GuardrailSpec], Field(max_length=20)] | SkipJsonSchema[None] = None
    cache: CacheOption | None = None
    fallbacks: Annotated[list[ModelAlias], Field(max_length=10)] | SkipJsonSchema[None] = None
    sticky: Literal["user", "session", "key"] | SkipJsonSchema[None] = None
    variants: Annotated[list[VariantSpec], Field(max_length=20)] | SkipJsonSchema[None] = None
    access: AccessSpec | None = None
    fewshot: FewshotSpec | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> EndpointUpdate:
        for name in ("enabled", "params", "guardrails", "fallbacks", "sticky", "variants"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null; leave it out to keep it, or send an empty value")
        return self

    def applied_to(self, config: EndpointConfig) -> EndpointConfig:
        """The config with these changes; a new label drops the pinned version and vice versa."""
        changes = self.model_dump(include=set(self.model_fields_set & CONFIG_FIELDS))
        merged = config.model_dump()
        if changes.get("label") is not None and "version" not in changes:
            merged["version"] = None
        if changes.get("version") is not None and "label" not in changes:
            merged["label"] = None
        if "prompt" in changes and changes["prompt"] != config.prompt:
            # Another prompt: the old one's label or version means nothing there.
            merged["label"] = merged["version"] = None
        merged.update(changes)
        return validated(EndpointConfig, merged)
