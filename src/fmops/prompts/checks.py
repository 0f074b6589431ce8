"""The checks a push makes beyond the spec's shape, each failing with a 400 that names the field.

Templates must compile (line and column on a syntax error), params must be OpenAI chat parameters
with valid values (the gateway's own request model judges them), and an output schema must be a
valid JSON Schema that refers only to itself: a remote `$ref` would make the server fetch a URL a
user chose when it validates an answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from fmops.errors import UserError
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.prompts.schemas import PromptSpec

# Fields of a chat request that are not the prompt's to set: the call itself (model, messages,
# streaming) and fmops' per-call extensions (an endpoint has its own cache and fallbacks).
NOT_PARAMS = frozenset(
    {"model", "messages", "stream", "stream_options", "cache", "timeout", "fallbacks", "variables"}
)
_REF_KEYS = ("$ref", "$dynamicRef")


def chat_params() -> list[str]:
    """The parameter names a prompt may set, sorted."""
    return sorted(set(ChatCompletionRequest.model_fields) - NOT_PARAMS)


def check_params(params: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """`params` as stored (nulls dropped); unknown names and bad values are 400s naming them."""
    allowed = set(chat_params())
    for name in params:
        if name not in allowed:
            raise UserError(
                f"{where}.{name}: not an OpenAI chat parameter a prompt can set; "
                f"known: {', '.join(sorted(allowed))}",
                param=f"{where}.{name}",
            )
    kept = {k: v for k, v in params.items() if v is not None}
    try:
        ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], **kept}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        name = loc[0] if loc and loc[0] in kept else ""
        path = ".".join([where, *loc]) if name else where
        raise UserError(f"{path}: {first['msg']}", param=f"{where}.{name}" if name else where) from None
    return kept


def _refs(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _REF_KEYS:
                yield f"{path}.{key}", value
            yield from _refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{path}[{i}]")


def check_output_schema(schema: dict[str, Any], where: str = "output_schema") -> None:
    from jsonschema import SchemaError  # only for prompts that declare an output schema
    from jsonschema.validators import Draft202012Validator, validator_for

    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise UserError(
            f"{where}{at}: not a valid JSON Schema: {exc.message}", param=where, code="invalid_schema"
        ) from None
    for path, ref in _refs(schema, where):
        if not (isinstance(ref, str) and ref.startswith("#")):
            raise UserError(
                f"{path}: only references inside the schema (starting with '#') are allowed, not {ref!r}",
                param=where,
                code="invalid_schema",
            )


def check_spec(spec: PromptSpec) -> tuple[dict[str, Any], list[str]]:
    """The version content to store and the variables its templates use; a 400 on the first fault."""
    from fmops.prompts.templates import compile_template  # Jinja loads only where prompts are written

    variables: set[str] = set()
    for i, message in enumerate(spec.messages):
        variables |= compile_template(message.content, f"messages[{i}].content").variables
    content = spec.content()
    content["params"] = check_params(spec.params)
    if spec.output_schema is not None:
        check_output_schema(spec.output_schema)
    return content, sorted(variables)
