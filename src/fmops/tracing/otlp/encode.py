"""Span rows -> an OTLP ExportTraceServiceRequest, with the OpenTelemetry GenAI attribute names.

Columns become the attributes a GenAI-aware backend reads (`gen_ai.request.model`, usage, input
and output messages, conversation and user ids) plus `fmops.*` for what GenAI has no name for
(endpoint, prompt version, variant, cost). A span that came in over OTLP goes back out under its
own resource (`service.name` ...), kept in its `resource.*` attributes; gateway spans are under
`service.name=fmops`. Rows never hold keys (only the key's id), so nothing secret can leave.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from fmops import __version__

SCOPE = "fmops"
SERVICE = "fmops"
_RESOURCE = "resource."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = 1 << 63
# fmops kind -> gen_ai.operation.name, for spans that did not arrive with one.
_OPERATIONS = {"llm": "chat", "embedding": "embeddings", "tool": "execute_tool", "agent": "invoke_agent"}
# Model calls are client spans in the GenAI conventions; other steps are internal.
_CLIENT_KINDS = frozenset({"llm", "embedding"})
# The gateway's request parameters (input["params"]) with a GenAI name.
_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
}
# Kept by the mapping for export only: they become the span's kind and scope, not attributes.
_INTERNAL = frozenset({"otel.span.kind"})
# Column -> attribute, set when the column has a value.
_COLUMNS = (
    ("model", "gen_ai.request.model"),
    ("response_model", "gen_ai.response.model"),
    ("provider", "gen_ai.provider.name"),
    ("provider", "gen_ai.system"),  # the older name, still what most backends read
    ("input_tokens", "gen_ai.usage.input_tokens"),
    ("output_tokens", "gen_ai.usage.output_tokens"),
    ("session_id", "gen_ai.conversation.id"),
    ("session_id", "session.id"),
    ("user", "user.id"),
    ("kind", "fmops.span.kind"),
    ("key_id", "fmops.key_id"),
    ("endpoint", "fmops.endpoint"),
    ("prompt_name", "fmops.prompt.name"),
    ("prompt_version", "fmops.prompt.version"),
    ("variant", "fmops.variant"),
    ("cost", "fmops.cost"),
    ("ttft_ms", "fmops.ttft_ms"),
)


class Unencodable(ValueError):
    """A row that cannot be an OTLP span (its ids are not hex)."""


def encode(rows: Iterable[dict[str, Any]]) -> tuple[ExportTraceServiceRequest, int]:
    """The request holding every row that can be encoded, and how many could not."""
    groups: dict[tuple[tuple[str, Any], ...], list[Span]] = {}
    skipped = 0
    for row in rows:
        try:
            span, resource = encode_span(row)
        except (Unencodable, ValueError, TypeError):
            skipped += 1
            continue
        key = tuple(sorted(resource.items(), key=lambda item: item[0]))
        groups.setdefault(key, []).append(span)
    request = ExportTraceServiceRequest()
    for key, spans in groups.items():
        group = request.resource_spans.add()
        group.resource.attributes.extend(_key_values(dict(key)))
        scoped = group.scope_spans.add()
        scoped.scope.name = SCOPE
        scoped.scope.version = __version__
        scoped.spans.extend(spans)
    return request, skipped


def encode_span(row: dict[str, Any]) -> tuple[Span, dict[str, Any]]:
    """One row as an OTLP span, and the resource it belongs under."""
    resource: dict[str, Any] = {"service.name": SERVICE}
    attributes: dict[str, Any] = {}
    for key, value in (row.get("attributes") or {}).items():
        if key.startswith(_RESOURCE):
            resource[key[len(_RESOURCE) :]] = value
        elif key not in _INTERNAL:
            attributes[key] = value
    resource["fmops.project_id"] = row.get("project_id")
    kind = row.get("kind") or "span"
    if (operation := _OPERATIONS.get(kind)) is not None:
        attributes.setdefault("gen_ai.operation.name", operation)
    for column, name in _COLUMNS:
        value = row.get(column)
        if value is not None:
            attributes[name] = value
    if row.get("cache_hit"):
        attributes["fmops.cache_hit"] = True
    if row.get("tags"):
        attributes["fmops.tags"] = list(row["tags"])  # what ingest reads back (fmops.tracing.tags)
    _io_attributes(attributes, kind, row.get("input"), row.get("output"))

    start = _nanos(row.get("start_time"))
    end = _nanos(row.get("end_time")) if row.get("end_time") is not None else start
    error = row.get("status") == "error"
    parent = row.get("parent_span_id")
    otel_kind = (row.get("attributes") or {}).get("otel.span.kind")
    span = Span(
        trace_id=_id(row.get("trace_id"), 16),
        span_id=_id(row.get("span_id"), 8),
        parent_span_id=_id(parent, 8) if parent else b"",
        name=str(row.get("name") or kind),
        kind=_span_kind(kind, otel_kind),
        start_time_unix_nano=start,
        end_time_unix_nano=max(end, start),
        attributes=_key_values(attributes),
        status=Status(code=Status.STATUS_CODE_ERROR, message=row.get("status_message") or "")
        if error
        else None,
    )
    return span, resource


def _span_kind(kind: str, sent: Any) -> Span.SpanKind.ValueType:
    """The OTLP kind the span arrived with, else client for model calls and internal for the rest."""
    if type(sent) is int and 0 < sent <= 5:
        return cast("Span.SpanKind.ValueType", sent)
    return Span.SPAN_KIND_CLIENT if kind in _CLIENT_KINDS else Span.SPAN_KIND_INTERNAL


def _io_attributes(attributes: dict[str, Any], kind: str, input_: Any, output: Any) -> None:
    """Input and output: GenAI message attributes for model calls, `fmops.input/output` otherwise."""
    if isinstance(input_, dict) and isinstance(input_.get("messages"), list):
        attributes["gen_ai.input.messages"] = _json(input_["messages"])
        params = input_.get("params")
        if isinstance(params, dict):
            for param, name in _PARAMS.items():
                if params.get(param) is not None:
                    attributes.setdefault(name, params[param])
    elif input_ is not None:
        attributes["fmops.input"] = input_ if isinstance(input_, str) else _json(input_)
    if kind == "llm" and isinstance(output, dict | list):
        messages = output if isinstance(output, list) else [output]
        attributes["gen_ai.output.messages"] = _json(messages)
        reasons = [m["finish_reason"] for m in messages if isinstance(m, dict) and m.get("finish_reason")]
        if reasons:
            attributes.setdefault("gen_ai.response.finish_reasons", reasons)
    elif output is not None:
        attributes["fmops.output"] = output if isinstance(output, str) else _json(output)


def _key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attributes.items():
        converted = _any(value)
        if converted is not None:
            out.append(KeyValue(key=key, value=converted))
    return out


def _any(value: Any) -> AnyValue | None:
    kind = type(value)
    if kind is str:
        return AnyValue(string_value=value)
    if kind is bool:
        return AnyValue(bool_value=value)
    if kind is int:
        return AnyValue(int_value=value) if -_INT64 <= value < _INT64 else AnyValue(string_value=str(value))
    if kind is float:
        return AnyValue(double_value=value)
    if kind is list:
        if all(type(v) in (str, bool, int, float) for v in value):
            items = [a for a in map(_any, value) if a is not None]
            return AnyValue(array_value=ArrayValue(values=items))
        return AnyValue(string_value=_json(value))
    if value is None:
        return None
    return AnyValue(string_value=_json(value))  # maps and anything else: their JSON text


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return orjson.dumps(value, default=str, option=orjson.OPT_PASSTHROUGH_DATACLASS).decode()


def _id(value: Any, size: int) -> bytes:
    """An id as `size` bytes; longer ids (a UUID as a span id) keep their last `size` bytes."""
    if not isinstance(value, str):
        raise Unencodable(f"id {value!r} is not hex")
    raw = bytes.fromhex(value)
    if not raw:
        raise Unencodable("empty id")
    return raw[-size:] if len(raw) >= size else raw.rjust(size, b"\0")


def _nanos(value: Any) -> int:
    if not isinstance(value, datetime):
        raise Unencodable("no start time")
    moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
