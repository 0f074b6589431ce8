"""How a candidate's messages are made from the start's: instructions rewritten, demonstrations
inserted, and what a rewrite must keep (the variables the input fills)."""

from __future__ import annotations

import json
import re
from typing import Any

from fmops.errors import UserError
from fmops.prompts.templates import compile_template, variables_of

JSON = dict[str, Any]
INSTRUCTION_ROLES = ("system", "developer")
_JINJA = re.compile(r"\{\{|\{%|\{#|\}\}|%\}|#\}")


def literal(text: str) -> str:
    """`text` as a template that renders to itself: a demonstration is data, never a template."""
    if not _JINJA.search(text):
        return text
    return (
        "{% raw %}"
        + text.replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
        + "{% endraw %}"
    )


def instruction_index(messages: list[JSON]) -> int:
    """The message that holds the instructions: the first system (or developer) message, else the first."""
    for i, message in enumerate(messages):
        if message.get("role") in INSTRUCTION_ROLES:
            return i
    return 0


def instructions(messages: list[JSON]) -> str:
    return str(messages[instruction_index(messages)].get("content") or "") if messages else ""


def with_instructions(messages: list[JSON], text: str) -> list[JSON]:
    out = [dict(m) for m in messages]
    out[instruction_index(out)]["content"] = text
    return out


def with_demos(messages: list[JSON], demos: list[tuple[str, str]]) -> list[JSON]:
    """The messages with each (input, answer) pair as a user and an assistant turn after the leading
    instructions, so the model sees worked examples before the case."""
    head = 0
    while head < len(messages) and messages[head].get("role") in INSTRUCTION_ROLES:
        head += 1
    shots: list[JSON] = []
    for text, answer in demos:
        shots += [
            {"role": "user", "content": literal(text)},
            {"role": "assistant", "content": literal(answer)},
        ]
    return [*(dict(m) for m in messages[:head]), *shots, *(dict(m) for m in messages[head:])]


def answer_text(expected: Any) -> str:
    """A case's expected answer as the text a model should write."""
    return expected if isinstance(expected, str) else json.dumps(expected)


def rewrite_problem(old: str, new: str, required: set[str]) -> str | None:
    """Why rewritten instructions cannot be used (None when they can)."""
    if len(new.strip()) < 10:
        return "too short"
    if len(new) > 20_000:
        return "too long"
    if new.strip() == old.strip():
        return "unchanged"
    if not required:
        return None  # kept as literal text (see Search.rewrite)
    try:
        used = set(compile_template(new, "instructions").variables)
    except UserError as exc:
        return f"not a valid template: {exc.message}"
    missing = required - used
    if missing:
        return f"drops the variable(s) {', '.join(sorted(missing))}"
    return None


def variables(messages: list[JSON]) -> set[str]:
    return set(variables_of([str(m.get("content") or "") for m in messages]))
