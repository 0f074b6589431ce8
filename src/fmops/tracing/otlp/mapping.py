"""One OTLP span -> one span row, reading the names instrumentations really send.

- OpenTelemetry GenAI conventions: `gen_ai.*` attributes (provider, request and response model,
  usage, input/output messages as JSON strings or structured values, finish reasons, operation ->
  kind), the older `gen_ai.prompt`/`gen_ai.completion` (also OpenLLMetry's flattened
  `gen_ai.prompt.0.role`) and the `gen_ai.*.message` / `gen_ai.choice` span events.
- OpenInference (Arize Phoenix's instrumentations): `openinference.span.kind`, `llm.*`,
  `input.value`/`output.value`, flattened `llm.input_messages.0.message.role`, documents, tools.
- fmops' own `fmops.*` names (endpoint, prompt, variant, session, user, input, output, cost), and
  common session/user names (`session.id`, `gen_ai.conversation.id`, `user.id`, `enduser.id`).
- Tags: `fmops.tags` or Langfuse's `langfuse.trace.tags` (fmops.tracing.tags); an invalid tag
  refuses the span, with the reason, as any other invalid field does.

Attributes are kept as a flat dict (name -> value), minus those turned into the input and output
columns, plus the resource's (`resource.service.name`, ...) and the instrumentation scope's. They
are bounded (count, key and value sizes) because every span tree and search reads them back, and
an application must not be able to turn one batch into megabytes per span; large content
belongs in `input`/`output`, which have their own, larger bound.

Columns have widths (PostgreSQL refuses longer text, failing the whole batch): text is cut to
them, and numbers out of a column's range are left out rather than failing the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import String

from fmops.errors import UserError
from fmops.store.models import Span
from fmops.tracing.otlp.decode import InvalidSpan, OtlpEvent, OtlpSpan
from fmops.tracing.otlp.limits import (
    MAX_EVENTS,
    MAX_IO_CHARS,
    MAX_ITEMS,
    MAX_STATUS_CHARS,
    bounded,
    bounded_io,
)
from fmops.tracing.tags import parse_tags

_MAX_NS = 1 << 63  # year 2262: far enough, and every backend stores it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32 = 1 << 31

# Text columns and their widths, read from the model so they cannot drift apart.
WIDTHS: dict[str, int] = {
    c.name: c.type.length
    for c in Span.__table__.columns
    if isinstance(c.type, String) and c.type.length is not None
}

# Attribute -> (column, rank). A span may carry several names for one column (a GenAI and an
# OpenInference instrumentation both active): the lowest rank wins.
_COLUMNS: dict[str, tuple[str, int]] = {
    "fmops.model": ("model", 0),
    "gen_ai.request.model": ("model", 1),
    "llm.model_name": ("model", 2),
    "embedding.model_name": ("model", 3),
    "gen_ai.response.model": ("response_model", 0),
    "fmops.provider": ("provider", 0),
    "gen_ai.provider.name": ("provider", 1),
    "gen_ai.system": ("provider", 2),
    "llm.provider": ("provider", 3),
    "llm.system": ("provider", 4),
    "gen_ai.usage.input_tokens": ("input_tokens", 0),
    "gen_ai.usage.prompt_tokens": ("input_tokens", 1),
    "llm.token_count.prompt": ("input_tokens", 2),
    "gen_ai.usage.output_tokens": ("output_tokens", 0),
    "gen_ai.usage.completion_tokens": ("output_tokens", 1),
    "llm.token_count.completion": ("output_tokens", 2),
    "fmops.cost": ("cost", 0),
    "llm.cost.total": ("cost", 1),
    "gen_ai.usage.cost": ("cost", 2),
    "fmops.session_id": ("session_id", 0),
    "session.id": ("session_id", 1),
    "gen_ai.conversation.id": ("session_id", 2),
    "langfuse.session.id": ("session_id", 3),
    "fmops.user": ("user", 0),
    "user.id": ("user", 1),
    "enduser.id": ("user", 2),
    "langfuse.user.id": ("user", 3),
    "fmops.endpoint": ("endpoint", 0),
    "fmops.prompt.name": ("prompt_name", 0),
    "fmops.prompt.version": ("prompt_version", 0),
    "fmops.variant": ("variant", 0),
    "fmops.ttft_ms": ("ttft_ms", 0),
    "fmops.cache_hit": ("cache_hit", 0),
}

# Indexed, flattened lists: `llm.input_messages.0.message.role` = "user", and so on.
_INPUT_MESSAGES = "llm.input_messages."
_OUTPUT_MESSAGES = "llm.output_messages."
_PROMPTS = "gen_ai.prompt."
_COMPLETIONS = "gen_ai.completion."
_DOCUMENTS = "retrieval.documents."
_EMBEDDINGS = "embedding.embeddings."
_RERANK_IN = "reranker.input_documents."
_RERANK_OUT = "reranker.output_documents."
_INDEXED = (
    _INPUT_MESSAGES,
    _OUTPUT_MESSAGES,
    _PROMPTS,
    _COMPLETIONS,
    _DOCUMENTS,
    _EMBEDDINGS,
    _RERANK_IN,
    _RERANK_OUT,
)
# Wrapper keys OpenInference puts around each item (`message.role`, `message_content.text`).
_WRAPPERS = frozenset({"message", "message_content", "tool_call", "document", "embedding"})

KINDS = frozenset(
    {
        "llm",
        "embedding",
        "chain",
        "tool",
        "retrieval",
        "reranker",
        "agent",
        "guardrail",
        "evaluator",
        "prompt",
        "span",
    }
)
_OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "CHAIN": "chain",
    "TOOL": "tool",
    "RETRIEVER": "retrieval",
    "RERANKER": "reranker",
    "AGENT": "agent",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator",
    "PROMPT": "prompt",
}
_OPERATIONS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_JSON_MEDIA = "application/json"
_NAME_WIDTH = WIDTHS["name"]
_from_timestamp = datetime.fromtimestamp
# Every column, so the writer has nothing to fill in; what the span carries is set over it.
_EMPTY_ROW: dict[str, Any] = {c.name: None for c in Span.__table__.columns}
_EMPTY_ROW.update(status="ok", cache_hit=False)


def to_row(span: OtlpSpan, project_id: str, key_id: str | None) -> dict[str, Any]:
    """The span row for `span`; raises InvalidSpan when it cannot be stored."""
    start, end = span.start_ns, span.end_ns
    if start <= 0:
        raise InvalidSpan("startTimeUnixNano is missing")
    if end < start:
        raise InvalidSpan(
            "endTimeUnixNano is missing" if end <= 0 else "endTimeUnixNano is before startTimeUnixNano"
        )
    if end >= _MAX_NS:
        raise InvalidSpan("endTimeUnixNano is after the year 2262")
    attrs = span.attributes
    found: dict[str, tuple[int, Any]] = {}
    indexed: dict[str, list[tuple[str, str, Any]]] = {}
    for key, value in attrs.items():  # one pass: columns, and flattened lists to rebuild
        hit = _COLUMNS.get(key)
        if hit is not None:
            column, rank = hit
            held = found.get(column)
            if held is None or rank < held[0]:
                found[column] = (rank, value)
        elif key.startswith(_INDEXED):
            prefix = next(p for p in _INDEXED if key.startswith(p))
            indexed.setdefault(prefix, []).append((key, key[len(prefix) :], value))

    row = _EMPTY_ROW.copy()
    for column, (_, value) in found.items():
        row[column] = _CONVERT[column](value)
    if row["model"] is None and row["response_model"] is not None:
        row["model"] = row["response_model"][: WIDTHS["model"]]
    in_events: list[Any] = []
    out_events: list[Any] = []
    if span.events:
        _read_events(span.events, attrs, in_events, out_events)
    status_message: Any = span.status_message
    if span.status_code == 2:
        row["status"] = "error"
        status_message = status_message or attrs.get("exception.message") or "error"
    if status_message:
        row["status_message"] = str(status_message)[:MAX_STATUS_CHARS]
    row["kind"] = _kind(attrs, row)
    tags = attrs.get("fmops.tags", attrs.get("langfuse.trace.tags"))
    if tags is not None:
        row["tags"] = _tags(tags)
    # Before the attributes are bounded: what becomes the input or output leaves them.
    row["input"] = _input(attrs, indexed, in_events)
    row["output"] = _output(attrs, indexed, out_events)
    attrs = bounded(attrs)
    attrs.update(span.context)  # bounded once per group by the decoder
    if span.kind > 1:  # internal (or unset) is the default; the others matter when exporting
        attrs["otel.span.kind"] = span.kind
    row["attributes"] = attrs
    row["span_id"] = span.span_id
    row["trace_id"] = span.trace_id
    row["parent_span_id"] = span.parent_span_id
    row["project_id"] = project_id
    row["key_id"] = key_id
    row["name"] = span.name[:_NAME_WIDTH] or "unnamed"
    # Cut to the microseconds the columns hold. Whole microseconds as a float of seconds come back
    # exactly (for dates before ~2100), and this is twice as fast as epoch + timedelta.
    row["start_time"] = _from_timestamp(start // 1000 / 1e6, UTC)
    row["end_time"] = _from_timestamp(end // 1000 / 1e6, UTC)
    row["latency_ms"] = (end - start) / 1e6
    return row


def _tags(value: Any) -> tuple[str, ...]:
    """`fmops.tags` or `langfuse.trace.tags`: a string array, or one comma-separated string."""
    if not isinstance(value, str | list | tuple):
        raise InvalidSpan("fmops.tags must be a string array or a comma-separated string")
    try:
        return parse_tags(value, param="fmops.tags")
    except UserError as exc:
        raise InvalidSpan(exc.message) from None


def _kind(attrs: dict[str, Any], row: dict[str, Any]) -> str:
    own = attrs.get("fmops.span.kind")
    if type(own) is str and own in KINDS:
        return own
    openinference = attrs.get("openinference.span.kind")
    if type(openinference) is str and (kind := _OPENINFERENCE_KINDS.get(openinference.upper())):
        return kind
    operation = attrs.get("gen_ai.operation.name")
    if type(operation) is str and (kind := _OPERATIONS.get(operation)):
        return kind
    # A span with a model but no operation is a model call; anything else is a plain span (an
    # HTTP request, a database query), as the trace writer's default kind.
    return "llm" if row["model"] is not None or row["input_tokens"] is not None else "span"


# --- input and output --------------------------------------------------------------------------


def _input(attrs: dict[str, Any], indexed: dict[str, list[tuple[str, str, Any]]], events: list[Any]) -> Any:
    """The span's input, from the first source present; the attributes it came from are removed."""
    pop = attrs.pop
    if (value := pop("fmops.input", None)) is not None:
        return bounded_io(_json_or_text(value))
    messages = _input_messages(attrs, indexed, events)
    if messages is not None:
        system = pop("gen_ai.system_instructions", None)
        return bounded_io(_with_system(messages, system))
    if (value := pop("gen_ai.tool.call.arguments", None)) is not None:
        return bounded_io(_json_or_text(value))
    if (value := pop("input.value", None)) is not None:
        return bounded_io(_value(value, pop("input.mime_type", None)))
    if _EMBEDDINGS in indexed:
        items = _unflatten(attrs, indexed.pop(_EMBEDDINGS))
        texts = [item.get("text") for item in items if isinstance(item, dict)]
        return bounded_io({"input": texts, "count": len(texts)})  # the vectors are not kept, as the gateway
    if _RERANK_IN in indexed:
        return bounded_io({"documents": _unflatten(attrs, indexed.pop(_RERANK_IN))})
    return None


def _input_messages(
    attrs: dict[str, Any], indexed: dict[str, list[tuple[str, str, Any]]], events: list[Any]
) -> Any:
    if (value := attrs.pop("gen_ai.input.messages", None)) is not None:
        return _messages(value)
    for prefix in (_INPUT_MESSAGES, _PROMPTS):
        if prefix in indexed:
            return _unflatten(attrs, indexed.pop(prefix))
    if (value := attrs.pop("gen_ai.prompt", None)) is not None:
        return _messages(value)
    return events or None


def _output(attrs: dict[str, Any], indexed: dict[str, list[tuple[str, str, Any]]], events: list[Any]) -> Any:
    pop = attrs.pop
    if (value := pop("fmops.output", None)) is not None:
        return bounded_io(_json_or_text(value))
    if (value := pop("gen_ai.output.messages", None)) is not None:
        return bounded_io(_reply(_messages(value)))
    for prefix in (_OUTPUT_MESSAGES, _COMPLETIONS):
        if prefix in indexed:
            return bounded_io(_reply(_unflatten(attrs, indexed.pop(prefix))))
    if (value := pop("gen_ai.completion", None)) is not None:
        return bounded_io(_reply(_messages(value)))
    if events:
        return bounded_io(_reply(events))
    if (value := pop("gen_ai.tool.call.result", None)) is not None:
        return bounded_io(_json_or_text(value))
    if (value := pop("output.value", None)) is not None:
        return bounded_io(_value(value, pop("output.mime_type", None)))
    if _DOCUMENTS in indexed:
        return bounded_io({"documents": _unflatten(attrs, indexed.pop(_DOCUMENTS))})
    if _RERANK_OUT in indexed:
        return bounded_io({"documents": _unflatten(attrs, indexed.pop(_RERANK_OUT))})
    return None


def _read_events(
    events: list[OtlpEvent], attrs: dict[str, Any], inputs: list[Any], outputs: list[Any]
) -> None:
    """Messages sent as span events (into inputs, outputs); exceptions and other events go to attrs."""
    others: list[dict[str, Any]] = []
    for event in events:
        name, values = event.name, event.attributes
        role = _MESSAGE_EVENTS.get(name)
        if role is not None:
            message = {k: _json_or_text(v) if k == "tool_calls" else v for k, v in values.items()}
            message.pop("gen_ai.system", None)
            message.setdefault("role", role)
            inputs.append(message)
        elif name == "gen_ai.choice":
            reply = _json_or_text(values.get("message"))
            reply = dict(reply) if isinstance(reply, dict) else {"role": "assistant", "content": reply}
            if (reason := values.get("finish_reason")) is not None:
                reply["finish_reason"] = reason
            outputs.append(reply)
        elif name == "gen_ai.content.prompt" and "gen_ai.prompt" in values:
            attrs.setdefault("gen_ai.prompt", values["gen_ai.prompt"])
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in values:
            attrs.setdefault("gen_ai.completion", values["gen_ai.completion"])
        elif name == "exception":
            for key in ("exception.type", "exception.message", "exception.stacktrace"):
                if key in values:
                    attrs.setdefault(key, values[key])
        elif len(others) < MAX_EVENTS:
            others.append({"name": name, "time": _iso(event.time_ns), "attributes": values})
    if others:
        attrs["otel.events"] = others


def _messages(value: Any) -> Any:
    """A list of messages from a JSON string, an array or one message; other text as it is."""
    parsed = _json_or_text(value)
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list):
        return parsed
    return [_plain_message(m) for m in parsed[:MAX_ITEMS]]


def _plain_message(message: Any) -> Any:
    """GenAI's `parts` form with only text parts, as the `content` string chat messages use."""
    if not isinstance(message, dict) or "content" in message or not isinstance(message.get("parts"), list):
        return message
    parts = message["parts"]
    if not all(isinstance(p, dict) and p.get("type") == "text" for p in parts):
        return message
    plain = {k: v for k, v in message.items() if k != "parts"}
    plain["content"] = "".join(str(p.get("content", "")) for p in parts)
    return plain


def _with_system(messages: Any, system: Any) -> Any:
    if not isinstance(messages, list):
        return {"messages": messages} if system is None else {"system": system, "messages": messages}
    if system is not None:
        instructions = _json_or_text(system)
        if isinstance(instructions, list):
            messages = [_plain_message({"role": "system", "parts": instructions}), *messages]
        else:
            messages = [{"role": "system", "content": instructions}, *messages]
    return {"messages": messages}


def _reply(messages: Any) -> Any:
    """As the gateway stores an answer: one message as itself, several as a list."""
    if isinstance(messages, list) and len(messages) == 1:
        return messages[0]
    return messages


def _unflatten(attrs: dict[str, Any], items: list[tuple[str, str, Any]]) -> list[Any]:
    """`0.message.role`=user, `0.message.contents.1.message_content.text`=hi -> [{role, contents: [..]}].

    The attributes read are removed.
    """
    root: dict[int, Any] = {}
    for key, rest, value in items:
        index, _, path = rest.partition(".")
        if not index.isdigit() or not path:
            continue
        del attrs[key]
        node = root.setdefault(int(index), {})
        parts = path.split(".")
        for part in parts[:-1]:
            step: Any = int(part) if part.isdigit() else part
            child = node.get(step)
            if not isinstance(child, dict):
                child = node[step] = {}
            node = child
        node[parts[-1]] = value
    return [_rebuild(root[i]) for i in sorted(root)[:MAX_ITEMS]]


def _rebuild(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(type(k) is int for k in node):
        return [_rebuild(node[i]) for i in sorted(node)[:MAX_ITEMS]]
    if len(node) == 1:
        ((key, inner),) = node.items()
        if key in _WRAPPERS:
            return _rebuild(inner)
    return {str(k): _rebuild(v) for k, v in node.items()}


def _value(value: Any, mime: Any) -> Any:
    """OpenInference's input.value/output.value: parsed when its mime type says JSON."""
    if mime == _JSON_MEDIA:
        return _json_or_text(value, declared=True)
    return value


def _json_or_text(value: Any, *, declared: bool = False) -> Any:
    """JSON text parsed: objects and arrays always, scalars (`42`, `"hi"`) when declared JSON."""
    if not isinstance(value, str) or not value or len(value) > MAX_IO_CHARS:
        return value
    if value[0] not in "[{" and not declared:
        return value
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return _scrubbed(parsed) if "\\u0000" in value else parsed


def _scrubbed(value: Any) -> Any:
    """NUL characters (which PostgreSQL refuses) replaced, in a value parsed from JSON text."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    return value


# --- columns -----------------------------------------------------------------------------------


def _text(width: int) -> Callable[[Any], str | None]:
    """The converter of a text column `width` characters wide."""

    def convert(value: Any) -> str | None:
        if type(value) is str:
            return value[:width] or None
        if type(value) in (int, float):
            return str(value)[:width]
        return None  # an array or a map is no model name

    return convert


def _count(value: Any) -> int | None:
    """A whole, non-negative number that fits an INTEGER column; anything else is left out."""
    if type(value) is int:
        return value if 0 <= value < _INT32 else None
    if type(value) is float and value.is_integer():
        return _count(int(value))
    if type(value) is str and value.isdigit():
        return _count(int(value))
    return None


def _amount(value: Any) -> float | None:
    if type(value) is str:
        try:
            value = float(value)
        except ValueError:
            return None
    if type(value) not in (int, float):
        return None
    number = float(value)
    return number if 0 <= number < float("inf") else None  # also drops NaN


def _iso(time_ns: int) -> str | None:
    if not 0 < time_ns < _MAX_NS:
        return None
    return (_EPOCH + timedelta(microseconds=time_ns // 1000)).isoformat()


# How each column read from an attribute is stored.
_CONVERT: dict[str, Callable[[Any], Any]] = {
    **{
        column: _text(WIDTHS[column])
        for column in (
            "model",
            "response_model",
            "provider",
            "user",
            "session_id",
            "endpoint",
            "prompt_name",
            "variant",
        )
    },
    "prompt_version": _count,
    "input_tokens": _count,
    "output_tokens": _count,
    "cost": _amount,
    "ttft_ms": _amount,
    "cache_hit": lambda value: value is True,
}
