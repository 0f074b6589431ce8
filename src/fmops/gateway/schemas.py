"""OpenAI request bodies as the gateway accepts them.

Known OpenAI parameters are accepted and forwarded; anything else is a 400 naming the field (as
OpenAI does), so a typo never silently changes behaviour. So are the sampling extras that
OpenAI-compatible local servers (vLLM, llama.cpp's server) take: `top_k`, `min_p` and
`repetition_penalty` (or llama.cpp's name for it, `repeat_penalty`); the local engines honour them,
an OpenAI-compatible upstream receives them, and a provider that cannot honour one answers a 400
naming it. fmops adds four optional fields:
`cache` (true, or {"ttl": seconds}), `timeout` (seconds for the whole call, retries included),
`fallbacks` (aliases to try after the model) and `variables` (values for the prompt of an
endpoint called as `model`; `messages` may then be empty).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
_EXTENSIONS = {"cache", "timeout", "fallbacks", "variables"}  # fmops', not OpenAI's (never changed)
_FORBIDDEN = {"base_url", "api_base", "api_key", "api_version", "organization", "custom_llm_provider"}


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_present(self) -> Message:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs `content`")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs `tool_call_id`")
        return self


class CacheOption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl: int = Field(300, ge=1, le=30 * 86400)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    # Empty only for an endpoint whose prompt has the user's message (the gateway checks).
    messages: list[Message] = Field(max_length=10_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    # Sampling extras of OpenAI-compatible local servers (not OpenAI's own API).
    top_k: int | None = Field(None, ge=-1, description="Sample from the k likeliest tokens (0 or -1: all)")
    min_p: float | None = Field(None, ge=0, le=1, description="Drop tokens below min_p × the likeliest's")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="vLLM's name; >1 repeats less")
    repeat_penalty: float | None = Field(None, gt=0, le=10, description="llama.cpp's name for the same")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=512)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None
    # fmops extensions
    cache: bool | CacheOption | None = None
    timeout: float | None = Field(None, gt=0, le=3600)
    fallbacks: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=10)
    variables: dict[str, Any] | None = Field(
        None, max_length=200, description="An endpoint's prompt variables (fmops); not for a model"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_upstream_override(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = sorted(_FORBIDDEN & data.keys())
            if bad:
                raise ValueError(
                    f"{', '.join(bad)} cannot be set per request: upstreams and their keys are configured "
                    "by an engineer in the model catalog (`fmops models add`)"
                )
        return data

    @model_validator(mode="after")
    def _one_repetition_penalty(self) -> ChatCompletionRequest:
        both = self.repetition_penalty is not None and self.repeat_penalty is not None
        if both and self.repetition_penalty != self.repeat_penalty:
            raise ValueError(
                "repetition_penalty and repeat_penalty are two names for one setting: send one of them"
            )
        return self

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be text, json_object or json_schema")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise ValueError("response_format.json_schema.schema must be a JSON Schema object")
        return value

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    def upstream_body(self) -> dict[str, Any]:
        """What providers receive: the OpenAI fields that were set, without fmops' extensions."""
        return self.model_dump(exclude_none=True, exclude=_EXTENSIONS)


MAX_EMBEDDING_INPUTS = 2048


def _input_arrays_schema(schema: dict[str, Any]) -> None:
    """Publish the list bounds `_input` enforces, so the schema does not promise `[]` works."""
    for branch in schema.get("anyOf", []):
        if branch.get("type") == "array":
            branch.update(minItems=1, maxItems=MAX_EMBEDDING_INPUTS)


class EmbeddingRequest(BaseModel):
    """Text inputs only: token-id inputs (which OpenAI also takes) are refused by the schema."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
