"""Turn a function's arguments and results into bounded span attributes.

Text stays text (`text/plain`); everything else becomes JSON (`application/json`), with objects
JSON cannot hold (sockets, clients, custom classes) written as their `repr`. A value larger than the
limit is cut and stored as text, so one huge argument can neither stall the application nor make
the server refuse the whole batch it travels in.
"""

from __future__ import annotations

from typing import Any

import orjson

JSON = "application/json"
TEXT = "text/plain"
# orjson writes these natively (dataclasses, datetimes, UUIDs, enums, numpy arrays); NaN becomes null.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_REPR_CHARS = 1_000  # a repr is a hint of what the object was, not its contents


def _fallback(value: Any) -> Any:
    """What orjson cannot write natively: pydantic models as their data, sets as lists, else repr."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json")
        except Exception:  # noqa: S110  (a broken model_dump falls through to its repr)
            pass
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return _short_repr(value)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= _REPR_CHARS else text[:_REPR_CHARS] + "…"


def _cut(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes of `text`, marked as cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept}… [{len(data) - limit} more bytes cut]"


def to_attribute(value: Any, limit: int) -> tuple[str, str]:
    """`(text, mime type)` for `input.value` / `output.value`; never raises."""
    if isinstance(value, str):
        return _cut(value, limit), TEXT
    try:
        data = orjson.dumps(value, default=_fallback, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        # Cycles, too-deep nesting, integers past 64 bits: describe the value instead.
        return _cut(_short_repr(value), limit), TEXT
    if len(data) <= limit:
        return data.decode(), JSON
    return _cut(data.decode(), limit), TEXT


def attribute_value(
    value: Any,
) -> str | bool | int | float | list[str] | list[bool] | list[int] | list[float]:
    """A value OpenTelemetry accepts as an attribute: primitives and flat lists as they are, else JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value:
        first = type(value[0])
        if first in (str, bool, int, float) and all(type(v) is first for v in value):
            return list(value)
    text, _ = to_attribute(value, 16_384)
    return text
