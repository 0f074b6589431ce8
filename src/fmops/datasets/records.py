"""Record kinds, their in-memory shape (plain JSON-compatible dicts), validation and hashing.

    chat:       {"messages": [{"role", "content"}, ...], "tools": list | None, "metadata": dict}
    completion: {"prompt": str, "completion": str, "metadata": dict}
    preference: {"prompt": [messages], "chosen": [messages], "rejected": [messages], "metadata": dict}
                (TRL's conversational preference format: chosen/rejected are the assistant turn(s))
    eval:       {"input": str | [messages], "expected": <any JSON value> | None, "metadata": dict}

`metadata` always exists (may be `{}`); it carries e.g. `trace_id`, `source`, `split`.
"""

from __future__ import annotations

import hashlib
import struct
from enum import StrEnum
from typing import Any

import orjson


class RecordKind(StrEnum):
    chat = "chat"
    completion = "completion"
    preference = "preference"
    eval = "eval"


ROLES = ("system", "user", "assistant", "tool")
_ROLES = frozenset(ROLES)
# What OpenAI's chat format allows on a message besides role and content (`weight`: its fine-tuning
# API's per-turn training switch); anything else is a mistake worth reporting.
_MESSAGE_EXTRAS = ("name", "tool_calls", "tool_call_id", "weight")
FIELDS: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.chat: ("messages", "tools", "metadata"),
    RecordKind.completion: ("prompt", "completion", "metadata"),
    RecordKind.preference: ("prompt", "chosen", "rejected", "metadata"),
    RecordKind.eval: ("input", "expected", "metadata"),
}
_ALLOWED = {kind: frozenset(fields) for kind, fields in FIELDS.items()}
_MESSAGE_KEYS = frozenset(("role", "content", *_MESSAGE_EXTRAS))
HASH_BYTES = 16  # 128 bits of sha256: collisions are out of reach for any dataset size


def parse_kind(value: str) -> RecordKind:
    try:
        return RecordKind(value)
    except ValueError:
        raise ValueError(f"unknown record kind {value!r}; use one of {', '.join(RecordKind)}") from None


def _message(value: Any, field: str, index: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{field}[{index}] is not an object with role and content")
    role = value.get("role")
    if role not in _ROLES:
        raise ValueError(f"{field}[{index}] has role {role!r}; use one of {', '.join(ROLES)}")
    content = value.get("content")
    if content is None and (value.get("tool_calls") or role == "assistant"):
        content = ""  # an assistant turn that only calls tools
    if not isinstance(content, str):
        raise ValueError(f"{field}[{index}] has no text content (content must be a string)")
    if len(value) == 2 and content is value.get("content"):  # the common case: role and content only
        return {"role": role, "content": content}
    if not value.keys() <= _MESSAGE_KEYS:
        raise ValueError(f"{field}[{index}] has unknown field {sorted(value.keys() - _MESSAGE_KEYS)[0]!r}")
    out: dict[str, Any] = {"role": role, "content": content}
    for key in _MESSAGE_EXTRAS:
        if value.get(key) is not None:
            out[key] = value[key]
    return out


def _messages(value: Any, field: str, *, default_role: str | None = None) -> list[dict[str, Any]]:
    if isinstance(value, str) and default_role is not None:
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        what = "a string or " if default_role else ""
        raise ValueError(f"{field} must be {what}a non-empty list of messages")
    return [_message(m, field, i) for i, m in enumerate(value)]


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    return value


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    meta = record.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError("metadata must be an object")
    return dict(meta)


def validate_record(kind: RecordKind, record: dict[str, Any]) -> dict[str, Any]:
    """A normalised copy of `record`, or ValueError saying what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError("a record must be an object")
    missing = [f for f in FIELDS[kind] if f not in record and f not in ("tools", "metadata", "expected")]
    if missing:
        raise ValueError(f"missing required field {', '.join(repr(m) for m in missing)} for a {kind} record")
    if not record.keys() <= _ALLOWED[kind]:
        unknown = sorted(record.keys() - _ALLOWED[kind])[0]
        raise ValueError(f"unknown field {unknown!r} for a {kind} record (extra data goes in metadata)")
    meta = _metadata(record)
    if kind is RecordKind.chat:
        tools = record.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise ValueError("tools must be a list of tool definitions")
        return {"messages": _messages(record["messages"], "messages"), "tools": tools, "metadata": meta}
    if kind is RecordKind.completion:
        return {
            "prompt": _text(record["prompt"], "prompt"),
            "completion": _text(record["completion"], "completion"),
            "metadata": meta,
        }
    if kind is RecordKind.preference:
        return {
            "prompt": _messages(record["prompt"], "prompt", default_role="user"),
            "chosen": _messages(record["chosen"], "chosen", default_role="assistant"),
            "rejected": _messages(record["rejected"], "rejected", default_role="assistant"),
            "metadata": meta,
        }
    value = record["input"]
    input_: str | list[dict[str, Any]] = (
        value if isinstance(value, str) else _messages(value, "input", default_role="user")
    )
    return {"input": input_, "expected": record.get("expected"), "metadata": meta}


def _joined(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m["content"] for m in messages if m.get("content"))


def record_text(kind: RecordKind, record: dict[str, Any]) -> str:
    """The text dedup, PII detection and filters look at: every turn's content, joined by newlines."""
    if kind is RecordKind.chat:
        return _joined(record["messages"])
    if kind is RecordKind.completion:
        return f"{record['prompt']}\n{record['completion']}"
    if kind is RecordKind.preference:
        return "\n".join(_joined(record[f]) for f in ("prompt", "chosen", "rejected"))
    value = record["input"]
    parts = [value if isinstance(value, str) else _joined(value)]
    expected = record.get("expected")
    if expected is not None:
        parts.append(expected if isinstance(expected, str) else orjson.dumps(expected).decode())
    return "\n".join(parts)


# Fields stored as text as they are; every other field is stored as JSON text.
PLAIN_FIELDS: dict[RecordKind, frozenset[str]] = {
    RecordKind.chat: frozenset(),
    RecordKind.completion: frozenset({"prompt", "completion"}),
    RecordKind.preference: frozenset(),
    RecordKind.eval: frozenset(),
}
_OPTIONAL = frozenset({"tools", "expected"})


def encode_fields(kind: RecordKind, record: dict[str, Any]) -> list[bytes | None]:
    """A normalised record's fields as stored (in `FIELDS[kind]` order), as UTF-8: JSON text with
    sorted keys, so the same content always encodes, and hashes, the same."""
    plain = PLAIN_FIELDS[kind]
    out: list[bytes | None] = []
    for field in FIELDS[kind]:
        value = record.get(field)
        if field in plain:
            out.append(None if value is None else value.encode())
        elif value is None and field in _OPTIONAL:
            out.append(None)
        else:
            out.append(orjson.dumps(value, option=_SORTED))
    return out


_SORTED = orjson.OPT_SORT_KEYS
_NONE = b"\xff"  # never occurs in UTF-8 text
_sha256 = hashlib.sha256


_length = struct.Struct("<Q").pack  # a field's length, 8 bytes little-endian


def hash_fields(fields: list[bytes | None]) -> bytes:
    """Each field's length and bytes, hashed in one call (`None` as one 0xff byte)."""
    parts: list[bytes] = []
    for data in fields:
        if data is None:
            data = _NONE
        parts += (_length(len(data)), data)
    return _sha256(b"".join(parts)).digest()[:HASH_BYTES]


def record_hash(kind: RecordKind, record: dict[str, Any]) -> bytes:
    """A normalised record's identity (metadata included): what diffs compare and versions hash."""
    return hash_fields(encode_fields(kind, record))
