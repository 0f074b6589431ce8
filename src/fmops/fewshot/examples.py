"""What a dataset record demonstrates (an input and its output), and where examples go in a call.

    chat:       the last user message before the last assistant message -> that assistant message
    completion: prompt -> completion
    preference: the prompt's last user message -> the chosen answer's last assistant message
    eval:       input (a string, or its last user message) -> expected (a string, or its JSON)

A record without both sides (an eval case with no expected answer, a chat with no assistant turn)
demonstrates nothing and is left out of the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Example:
    """One demonstration found for a query: its place in the version, its texts, how close it is."""

    row: int  # the record's row number in the dataset version, from 0
    id: str  # the record's identity (hex of its 16-byte hash): the same record in any version
    input: str
    output: str
    similarity: float  # cosine similarity of its input to the query, -1..1

    def messages(self) -> list[dict[str, Any]]:
        """The example as the user/assistant pair a chat model reads."""
        return [{"role": "user", "content": self.input}, {"role": "assistant", "content": self.output}]


def _last(messages: Any, role: str, before: int | None = None) -> tuple[int, str] | None:
    if not isinstance(messages, list):
        return None
    end = len(messages) if before is None else before
    for i in range(end - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == role:
            text = text_of(message.get("content"))
            return (i, text) if text.strip() else None
    return None


def demonstration(kind: str, record: dict[str, Any]) -> tuple[str, str] | None:
    """(input, output) that `record` (of a `RecordKind`) demonstrates, or None when it lacks one side.
    (Kinds compare as strings: importing fmops.datasets would load pyarrow on the serving path.)"""
    pair: tuple[str, str] | None = None
    if kind == "completion":
        pair = (record.get("prompt") or "", record.get("completion") or "")
    elif kind == "chat":
        answer = _last(record.get("messages"), "assistant")
        question = _last(record.get("messages"), "user", answer[0]) if answer else None
        pair = (question[1], answer[1]) if answer and question else None
    elif kind == "preference":
        question = _last(record.get("prompt"), "user")
        answer = _last(record.get("chosen"), "assistant")
        pair = (question[1], answer[1]) if answer and question else None
    elif kind == "eval":
        value, expected = record.get("input"), record.get("expected")
        found = _last(value, "user") if isinstance(value, list) else None
        question_text = value if isinstance(value, str) else found[1] if found else ""
        if expected is None:
            return None
        answer_text = expected if isinstance(expected, str) else orjson.dumps(expected).decode()
        pair = (question_text, answer_text)
    if pair is None or not pair[0].strip() or not pair[1].strip():
        return None
    return pair


def text_of(content: Any) -> str:
    """A message's text: its string content, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def last_user(messages: Sequence[dict[str, Any]]) -> int | None:
    """The index of the last user message: the query, and where the examples go."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def with_examples(messages: list[dict[str, Any]], examples: Sequence[Example]) -> list[dict[str, Any]]:
    """`messages` with each example's pair inserted before the last user message, most similar
    nearest to it (models weigh what they read last)."""
    at = last_user(messages)
    if at is None or not examples:
        return messages
    pairs = [m for example in reversed(examples) for m in example.messages()]
    return [*messages[:at], *pairs, *messages[at:]]
