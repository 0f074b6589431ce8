"""Where the text of each record kind lives: the answer a filter judges, and every string PII
redaction must rewrite (roles, tool definitions and metadata are left alone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fmops.datasets.records import RecordKind

Rewrite = Callable[[str], str]


def _last_assistant(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return None


def answer(kind: RecordKind, record: dict[str, Any]) -> str | None:
    """The answer a record teaches (None when it has none): the last assistant turn of a chat, the
    completion, the chosen turns of a preference pair, an eval case's expected text."""
    if kind is RecordKind.chat:
        return _last_assistant(record["messages"])
    if kind is RecordKind.completion:
        return str(record["completion"])
    if kind is RecordKind.preference:
        return _last_assistant(record["chosen"])
    expected = record.get("expected")
    return expected if isinstance(expected, str) else None


def _messages(messages: list[dict[str, Any]], fn: Rewrite) -> list[dict[str, Any]]:
    return [{**m, "content": fn(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]


def _value(value: Any, fn: Rewrite) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_value(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _value(v, fn) for k, v in value.items()}
    return value


def rewrite(kind: RecordKind, record: dict[str, Any], fn: Rewrite) -> dict[str, Any]:
    """A copy of `record` with `fn` applied to every text the record holds."""
    if kind is RecordKind.chat:
        return {**record, "messages": _messages(record["messages"], fn)}
    if kind is RecordKind.completion:
        return {**record, "prompt": fn(record["prompt"]), "completion": fn(record["completion"])}
    if kind is RecordKind.preference:
        return {**record, **{f: _messages(record[f], fn) for f in ("prompt", "chosen", "rejected")}}
    value = record["input"]
    new_input = fn(value) if isinstance(value, str) else _messages(value, fn)
    return {**record, "input": new_input, "expected": _value(record.get("expected"), fn)}
