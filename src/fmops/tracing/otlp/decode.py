"""OTLP/HTTP trace request bodies turned into `OtlpSpan`s: media types, gzip, protobuf and JSON.

Both encodings are decoded into the same plain `OtlpSpan`, so one mapping (mapping.py) serves
both. A span that cannot be read (bad ids, a field of the wrong type) is not fatal: it becomes a
`Problem` and the rest of the batch goes on, as OTLP's partial success asks. Only a body that is
not OTLP at all is refused as a whole.

The JSON walk is written by hand over orjson's dicts: protobuf's `json_format` is several times
slower and reads ids as base64, whereas OTLP/JSON sends them as hex.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from fmops.errors import PayloadTooLarge, UserError
from fmops.tracing.otlp.limits import bounded

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
# Values nested deeper than this (arrays of arrays of ...) are dropped: no instrumentation nests
# attributes this deep, and bounding it keeps the recursion far from Python's limit.
MAX_VALUE_DEPTH = 8
_INT64 = 1 << 63
_REPLACEMENT = "\ufffd"
_SPAN_KINDS = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class UnsupportedMediaType(UserError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidSpan(ValueError):
    """One span of a batch cannot be stored; the message says which field and why."""


@dataclass(slots=True)
class OtlpEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(slots=True)
class OtlpSpan:
    """One span as sent, ids as lowercase hex, attributes as plain Python values."""

    at: tuple[int, int, int]  # (resource, scope, span) index in the request, for error messages
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[OtlpEvent]
    status_code: int  # OTLP StatusCode: 0 unset, 1 ok, 2 error
    status_message: str
    # Resource attributes (prefixed `resource.`) and the instrumentation scope, shared by the
    # spans of one group: merged into each span's attributes by the mapping.
    context: dict[str, Any]


@dataclass(slots=True)
class Problem:
    at: tuple[int, ...]
    message: str

    def describe(self) -> str:
        names = ("resourceSpans", "scopeSpans", "spans")
        where = ".".join(f"{name}[{index}]" for name, index in zip(names, self.at, strict=False))
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Decoded:
    spans: list[OtlpSpan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejected: int = 0  # spans that could not be read (a problem at group level may reject none)

    def reject(self, at: tuple[int, ...], message: str, spans: int = 1) -> None:
        self.problems.append(Problem(at, message))
        self.rejected += spans


def media_type(content_type: str | None) -> str:
    """PROTOBUF or JSON from a Content-Type header; anything else is a 415."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    found = _MEDIA_TYPES.get(base)
    if found is None:
        raise UnsupportedMediaType(
            f"Content-Type {base or '(none)'!r} is not accepted: send OTLP as {PROTOBUF} or {JSON}",
            param="Content-Type",
        )
    return found


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding (none or gzip) undone, never inflating past `limit` bytes.

    A gzip bomb is cut off at the limit and answered 413, like an oversized plain body.
    """
    name = (encoding or "identity").strip().lower()
    if name in ("identity", ""):
        return body
    if name not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType(
            f"Content-Encoding {name!r} is not accepted: send gzip or no encoding", param="Content-Encoding"
        )
    parts: list[bytes] = []
    total = 0
    rest = body
    while rest:  # a gzip stream may hold several members, one after the other
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise UserError(
                f"the body is not valid gzip ({exc}); send it as sent by Content-Encoding"
            ) from None
        total += len(part)
        if total > limit:
            raise PayloadTooLarge(
                f"the request body inflates to more than the limit of {limit} bytes"
                " (setting FMOPS_MAX_BODY_BYTES); send smaller batches"
            )
        if not inflater.eof:
            raise UserError("the gzip body is truncated")
        parts.append(part)
        rest = inflater.unused_data
    return b"".join(parts)


def decode(body: bytes, media: str) -> Decoded:
    return decode_protobuf(body) if media == PROTOBUF else decode_json(body)


# --- protobuf ----------------------------------------------------------------------------------


def decode_protobuf(body: bytes) -> Decoded:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise UserError(f"the body is not an OTLP ExportTraceServiceRequest in protobuf ({exc})") from None
    out = Decoded()
    for r, group in enumerate(request.resource_spans):
        resource = _resource(_pb_attributes(group.resource.attributes))
        for s, scoped in enumerate(group.scope_spans):
            context = _with_scope(resource, scoped.scope.name, scoped.scope.version)
            for i, span in enumerate(scoped.spans):
                at = (r, s, i)
                try:
                    out.spans.append(_pb_span(span, at, context))
                except InvalidSpan as exc:
                    out.reject(at, str(exc))
    return out


def _pb_span(span: Any, at: tuple[int, int, int], context: dict[str, Any]) -> OtlpSpan:
    status = span.status
    return OtlpSpan(
        at=at,
        trace_id=_id(span.trace_id, 16, "traceId"),
        span_id=_id(span.span_id, 8, "spanId"),
        parent_span_id=_parent_id(span.parent_span_id),
        name=_clean(span.name),
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes=_pb_attributes(span.attributes),
        events=[
            OtlpEvent(_clean(e.name), e.time_unix_nano, _pb_attributes(e.attributes)) for e in span.events
        ],
        status_code=status.code,
        status_message=_clean(status.message),
        context=context,
    )


def _pb_attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:
        value = kv.value
        # Most attributes are strings: a non-empty string_value is one (the oneof holds one field), and
        # reading it spares WhichOneof, a third of this loop's time. Empty: ask which field is set.
        text = value.string_value
        if text:
            converted: Any = text.replace("\x00", _REPLACEMENT) if "\x00" in text else text
        else:
            which = value.WhichOneof("value")
            if which is None:
                continue
            converted = _pb_value(value, which, 0)
        key = kv.key
        out[key.replace("\x00", _REPLACEMENT) if "\x00" in key else key] = converted
    return out


def _pb_value(value: AnyValue, which: str | None, depth: int) -> Any:
    if which == "string_value":
        return _clean(value.string_value)
    if which in ("int_value", "bool_value"):
        return getattr(value, which)
    if which == "double_value":
        return _double(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if depth >= MAX_VALUE_DEPTH:
        return None
    if which == "array_value":
        return [_pb_value(v, v.WhichOneof("value"), depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {
            _clean(kv.key): _pb_value(kv.value, kv.value.WhichOneof("value"), depth + 1)
            for kv in value.kvlist_value.values
        }
    return None


# --- JSON --------------------------------------------------------------------------------------


def decode_json(body: bytes) -> Decoded:
    if not body.strip():
        raise UserError("the request body is missing: send an OTLP/JSON ExportTraceServiceRequest")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"the body is not valid JSON ({exc}); send OTLP/JSON") from None
    if not isinstance(request, dict):
        raise UserError('the body must be a JSON object: {"resourceSpans": [...]} (OTLP/JSON)')
    groups = request.get("resourceSpans")
    if groups is None:  # proto3 JSON: null is the default, no spans
        groups = []
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise UserError("resourceSpans must be an array of objects (OTLP/JSON)", param="resourceSpans")
    # JSON strings can only hold NUL (which PostgreSQL refuses) as the escape \u0000.
    scrub = b"\\u0000" in body
    out = Decoded()
    for r, group in enumerate(groups):
        try:
            resource = _resource(_json_attributes(_field(group, "resource", dict).get("attributes"), scrub))
            scoped_groups = _field(group, "scopeSpans", list)
        except (InvalidSpan, TypeError, ValueError, KeyError, AttributeError) as exc:
            out.reject((r,), _malformed(exc, "resource"), 0)
            continue
        for s, scoped in enumerate(scoped_groups):
            try:
                scope = _field(scoped, "scope", dict)
                context = _with_scope(resource, scope.get("name"), scope.get("version"))
                spans = _field(scoped, "spans", list)
            except (InvalidSpan, TypeError, ValueError, KeyError, AttributeError) as exc:
                out.reject((r, s), _malformed(exc, "scope"), 0)
                continue
            for i, span in enumerate(spans):
                at = (r, s, i)
                try:
                    out.spans.append(_json_span(span, at, context, scrub))
                except (InvalidSpan, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
                    out.reject(at, _malformed(exc, "span"))
    return out


def _json_span(
    span: dict[str, Any], at: tuple[int, int, int], context: dict[str, Any], scrub: bool
) -> OtlpSpan:
    get = span.get
    status = get("status") or {}
    kind = get("kind") or 0
    kind = _SPAN_KINDS.get(kind, 0) if type(kind) is str else int(kind)
    code = status.get("code") or 0
    name = _text(get("name"), scrub)
    message = _text(status.get("message"), scrub)
    return OtlpSpan(
        at=at,
        trace_id=_id(_json_id(get("traceId"), 16, "traceId"), 16, "traceId"),
        span_id=_id(_json_id(get("spanId"), 8, "spanId"), 8, "spanId"),
        parent_span_id=_parent_id(_json_id(get("parentSpanId"), 8, "parentSpanId")),
        name=name,
        kind=kind if 0 <= kind <= 5 else 0,
        start_ns=int(get("startTimeUnixNano") or 0),
        end_ns=int(get("endTimeUnixNano") or 0),
        attributes=_json_attributes(get("attributes"), scrub),
        events=[
            OtlpEvent(
                _text(e.get("name"), scrub),
                int(e.get("timeUnixNano") or 0),
                _json_attributes(e.get("attributes"), scrub),
            )
            for e in get("events") or ()
        ],
        status_code=_STATUS_CODES.get(code, 0) if type(code) is str else int(code),
        status_message=message,
        context=context,
    )


def _json_attributes(items: Any, scrub: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items or ():
        value = kv.get("value")
        if not value:
            continue
        text = value.get("stringValue")
        converted = text if text is not None else _json_value(value, 0)
        if converted is None:
            continue
        key = kv["key"]
        if type(key) is not str:
            raise InvalidSpan(f"attribute keys must be strings, got {str(key)[:40]!r}")
        if scrub:
            key, converted = _clean(key), _clean_deep(converted)
        out[key] = converted
    return out


def _json_value(value: dict[str, Any], depth: int) -> Any:
    for name, item in value.items():  # an AnyValue holds one field
        if item is None:  # proto3 JSON: null is the field's default; no value
            return None
        if name == "stringValue":
            return item
        if name == "intValue":
            number = int(item)  # int64 is sent as a string or a number
            return number if -_INT64 <= number < _INT64 else str(number)
        if name == "boolValue":
            return item is True or item == "true"
        if name == "doubleValue":
            return _double(float(item))  # "NaN" and "Infinity" come as strings
        if name == "bytesValue":
            return item  # base64 already
        if depth >= MAX_VALUE_DEPTH:
            return None
        if name == "arrayValue":
            return [_json_value(v, depth + 1) for v in item.get("values") or ()]
        if name == "kvlistValue":
            return {
                kv["key"]: _json_value(kv.get("value") or {}, depth + 1) for kv in item.get("values") or ()
            }
    return None


def _field(obj: Any, name: str, kind: type) -> Any:
    value = obj.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidSpan(f"{name} must be {'an array' if kind is list else 'an object'}")
    return value


def _json_id(value: Any, size: int, name: str) -> bytes:
    """An id from OTLP/JSON: hex as the spec says, or base64 as protobuf's own JSON mapping writes it."""
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        pass
    if not value:
        return b""
    if isinstance(value, str) and len(value) == (size + 2) // 3 * 4:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise InvalidSpan(f"{name} must be {size * 2} hex characters ({size} bytes), got {str(value)[:40]!r}")


# --- shared ------------------------------------------------------------------------------------


_ZEROS = {16: bytes(16), 8: bytes(8)}


def _id(raw: bytes, size: int, name: str) -> str:
    if len(raw) != size or raw == _ZEROS[size]:
        got = "missing" if not raw else f"{len(raw)} bytes" if len(raw) != size else "all zero"
        raise InvalidSpan(f"{name} must be {size} bytes ({size * 2} hex characters), not all zero; got {got}")
    return raw.hex()


def _parent_id(raw: bytes) -> str | None:
    if not raw or raw == _ZEROS.get(len(raw)):  # no parent: a root span
        return None
    if len(raw) != 8:
        raise InvalidSpan(f"parentSpanId must be 8 bytes (16 hex characters) or empty; got {len(raw)} bytes")
    return raw.hex()


def _resource(attributes: dict[str, Any]) -> dict[str, Any]:
    """Resource attributes as span attributes: bounded once per group, named `resource.<name>`."""
    return {"resource." + key: value for key, value in bounded(attributes).items()}


def _with_scope(resource: dict[str, Any], name: Any, version: Any) -> dict[str, Any]:
    if not name and not version:
        return resource
    context = dict(resource)
    if name:
        context["otel.scope.name"] = _clean(str(name))
    if version:
        context["otel.scope.version"] = _clean(str(version))
    return context


def _double(number: float) -> float | str:
    # NaN and infinities have no JSON form (PostgreSQL's JSONB refuses them): kept as text.
    if number != number or number in (float("inf"), float("-inf")):
        return str(number)
    return number


def _text(value: Any, scrub: bool) -> str:
    """A name or message from JSON as text ("" when absent)."""
    if not value:
        return ""
    text = value if type(value) is str else str(value)
    return _clean(text) if scrub else text


def _clean(text: str) -> str:
    """Text without NUL characters, which PostgreSQL cannot store."""
    return text.replace("\x00", _REPLACEMENT) if "\x00" in text else text


def _clean_deep(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_clean_deep(v) for v in value]
    if isinstance(value, dict):
        return {_clean(str(k)): _clean_deep(v) for k, v in value.items()}
    return value


def _malformed(exc: Exception, what: str) -> str:
    if isinstance(exc, InvalidSpan):
        return str(exc)
    return f"malformed {what}: {type(exc).__name__}: {str(exc)[:200]}"
