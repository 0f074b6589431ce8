"""Bounds on what one ingested span may store, and the helpers that enforce them.

Attributes are read back with every span tree and search, so one application must not be able to
turn a batch into megabytes per span: their count, key length and value size are capped (values
are cut, with a note of how much was cut). Inputs and outputs hold the content (prompts, answers,
documents) and get a larger bound of their own.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import orjson

MAX_ATTRIBUTES = 128  # as the OpenTelemetry SDK's default attribute count limit
MAX_KEY_CHARS = 256
MAX_VALUE_CHARS = 8192  # one attribute value (arrays and maps: their JSON text)
MAX_IO_CHARS = 1_000_000  # the input, and the output, of one span
MAX_ITEMS = 256  # messages or documents rebuilt from flattened attributes
MAX_EVENTS = 32  # events other than messages and exceptions, kept in `otel.events`
MAX_STATUS_CHARS = 2000  # as the gateway's status messages
TOO_DEEP = "[not stored: nested too deeply]"


def bounded(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes within the limits: at most MAX_ATTRIBUTES, long keys dropped, values cut."""
    if len(attrs) > MAX_ATTRIBUTES:
        dropped = len(attrs) - MAX_ATTRIBUTES
        attrs = dict(islice(attrs.items(), MAX_ATTRIBUTES))
        attrs["otel.dropped_attributes_count"] = dropped
    too_long: list[str] = []
    for key, value in attrs.items():
        if len(key) > MAX_KEY_CHARS:
            too_long.append(key)
        kind = type(value)
        if kind is str:
            if len(value) > MAX_VALUE_CHARS:
                attrs[key] = cut(value, MAX_VALUE_CHARS)
        elif kind is list or kind is dict:
            text = json_text(value)
            if text is None:
                attrs[key] = TOO_DEEP
            elif len(text) > MAX_VALUE_CHARS:
                attrs[key] = cut(text, MAX_VALUE_CHARS)
    for key in too_long:
        del attrs[key]
    return attrs


def bounded_io(value: Any) -> Any:
    """An input or output as it is, or its JSON text cut to MAX_IO_CHARS when it is larger."""
    if value is None or type(value) in (int, float, bool):
        return value
    if type(value) is str:
        return cut(value, MAX_IO_CHARS) if len(value) > MAX_IO_CHARS else value
    text = json_text(value)
    if text is None:
        return TOO_DEEP
    return cut(text, MAX_IO_CHARS) if len(text) > MAX_IO_CHARS else value


def json_text(value: Any) -> str | None:
    """The value as JSON text; None when it nests too deep to be stored (and read back) safely."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson stops at 254 levels, well before the store's serializer would fail
        return None


def cut(text: str, limit: int) -> str:
    return f"{text[:limit]}… [{len(text) - limit} more characters]"
