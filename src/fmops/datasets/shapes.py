"""The shapes records arrive in, told apart by their fields, and normalised to a record kind.

| shape             | fields                                    | default kind |
| openai            | messages (+ tools)                        | chat         |
| sharegpt          | conversations: [{from, value}]            | chat         |
| alpaca            | instruction, input?, output (+ system)    | chat         |
| prompt_completion | prompt, completion                        | completion   |
| preference        | prompt?, chosen, rejected                 | preference   |
| eval              | input, expected?                          | eval         |

A shape converts to other kinds where the meaning is clear (alpaca or prompt/completion to chat,
a chat ending in an assistant turn to an eval case); other pairs are refused before reading on.
Fields a shape does not use go into the record's `metadata`, so nothing in a row is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import orjson

from fmops.datasets.records import RecordKind
from fmops.errors import UserError


class Shape(StrEnum):
    openai = "openai"
    sharegpt = "sharegpt"
    alpaca = "alpaca"
    prompt_completion = "prompt_completion"
    preference = "preference"
    eval = "eval"


DEFAULT_KIND = {
    Shape.openai: RecordKind.chat,
    Shape.sharegpt: RecordKind.chat,
    Shape.alpaca: RecordKind.chat,
    Shape.prompt_completion: RecordKind.completion,
    Shape.preference: RecordKind.preference,
    Shape.eval: RecordKind.eval,
}
_USES = {
    Shape.openai: {"messages", "tools"},
    Shape.sharegpt: {"conversations", "system"},
    Shape.alpaca: {"instruction", "input", "output", "system"},
    Shape.prompt_completion: {"prompt", "completion"},
    Shape.preference: {"prompt", "chosen", "rejected"},
    Shape.eval: {"input", "expected"},
}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}
# Values that may arrive as JSON text (CSV cells): parsed when they look like JSON.
_NESTED = {
    "messages",
    "tools",
    "conversations",
    "chosen",
    "rejected",
    "prompt",
    "input",
    "expected",
    "metadata",
}


def detect_shape(row: dict[str, Any]) -> Shape:
    keys = set(row)
    if "messages" in keys:
        return Shape.openai
    if "conversations" in keys:
        return Shape.sharegpt
    if {"chosen", "rejected"} <= keys:
        return Shape.preference
    if {"instruction", "output"} <= keys:
        return Shape.alpaca
    if {"prompt", "completion"} <= keys:
        return Shape.prompt_completion
    if "input" in keys:
        return Shape.eval
    shown = ", ".join(sorted(keys)[:20]) or "none"
    raise UserError(
        f"cannot tell the records' shape from their fields ({shown}); expected OpenAI chat (messages), "
        "ShareGPT (conversations), Alpaca (instruction/input/output), prompt/completion, "
        "preference (prompt/chosen/rejected) or eval (input/expected)",
        param="file",
    )


def _parsed(key: str, value: Any) -> Any:
    if key in _NESTED and isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _metadata(row: dict[str, Any], used: set[str]) -> dict[str, Any]:
    meta = row.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("metadata must be an object")
    extra = {k: v for k, v in row.items() if k not in used and k != "metadata" and v is not None}
    return {**extra, **(meta or {})}


def _required(row: dict[str, Any], *fields: str) -> None:
    missing = [f for f in fields if row.get(f) is None]
    if missing:
        raise ValueError(f"missing required field {', '.join(repr(m) for m in missing)}")


def _string(row: dict[str, Any], field: str) -> str:
    value = row[field]
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    return value


def _sharegpt(row: dict[str, Any]) -> list[dict[str, Any]]:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("conversations must be a non-empty list of {from, value} turns")
    messages = []
    if isinstance(row.get("system"), str) and row["system"]:
        messages.append({"role": "system", "content": row["system"]})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"conversations[{i}] is not a {{from, value}} turn")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ValueError(f"conversations[{i}] is from {turn['from']!r}, which is not a known speaker")
        messages.append({"role": role, "content": turn["value"]})
    return messages


def _alpaca_prompt(row: dict[str, Any]) -> str:
    instruction = _string(row, "instruction")
    extra = row.get("input")
    return f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction


def _chat(shape: Shape, row: dict[str, Any]) -> dict[str, Any]:
    if shape is Shape.openai:
        _required(row, "messages")
        return {"messages": row["messages"], "tools": row.get("tools")}
    if shape is Shape.sharegpt:
        _required(row, "conversations")
        return {"messages": _sharegpt(row)}
    if shape is Shape.alpaca:
        _required(row, "instruction", "output")
        system = row.get("system")
        head = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
        user = {"role": "user", "content": _alpaca_prompt(row)}
        return {"messages": [*head, user, {"role": "assistant", "content": _string(row, "output")}]}
    _required(row, "prompt", "completion")
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list) and isinstance(completion, list):  # TRL's conversational prompt-completion
        return {"messages": [*prompt, *completion]}
    return {
        "messages": [
            {"role": "user", "content": _string(row, "prompt")},
            {"role": "assistant", "content": _string(row, "completion")},
        ]
    }


def _completion(shape: Shape, row: dict[str, Any]) -> dict[str, Any]:
    if shape is Shape.alpaca:
        _required(row, "instruction", "output")
        return {"prompt": _alpaca_prompt(row), "completion": _string(row, "output")}
    _required(row, "prompt", "completion")
    return {"prompt": _string(row, "prompt"), "completion": _string(row, "completion")}


def _preference(_shape: Shape, row: dict[str, Any]) -> dict[str, Any]:
    _required(row, "chosen", "rejected")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    if prompt is None and isinstance(chosen, list) and isinstance(rejected, list):
        # TRL's implicit prompt: the shared opening turns of chosen and rejected are the prompt.
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    if not prompt:
        raise ValueError("missing required field 'prompt'")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _eval(shape: Shape, row: dict[str, Any]) -> dict[str, Any]:
    if shape is Shape.openai:
        _required(row, "messages")
        messages = row["messages"]
        if not isinstance(messages, list) or len(messages) < 2 or not isinstance(messages[-1], dict):
            raise ValueError("messages must end with the expected assistant turn")
        last = messages[-1]
        if last.get("role") != "assistant":
            raise ValueError("messages must end with the expected assistant turn")
        return {"input": messages[:-1], "expected": last.get("content")}
    if shape is Shape.prompt_completion:
        _required(row, "prompt", "completion")
        return {"input": row["prompt"], "expected": row["completion"]}
    if shape is Shape.alpaca:
        _required(row, "instruction", "output")
        return {"input": _alpaca_prompt(row), "expected": row["output"]}
    _required(row, "input")
    return {"input": row["input"], "expected": row.get("expected")}


_CONVERT: dict[RecordKind, tuple[Callable[[Shape, dict[str, Any]], dict[str, Any]], set[Shape]]] = {
    RecordKind.chat: (_chat, {Shape.openai, Shape.sharegpt, Shape.alpaca, Shape.prompt_completion}),
    RecordKind.completion: (_completion, {Shape.alpaca, Shape.prompt_completion}),
    RecordKind.preference: (_preference, {Shape.preference}),
    RecordKind.eval: (_eval, {Shape.eval, Shape.openai, Shape.prompt_completion, Shape.alpaca}),
}


def check_conversion(shape: Shape, kind: RecordKind) -> None:
    if shape not in _CONVERT[kind][1]:
        accepted = ", ".join(sorted(_CONVERT[kind][1]))
        raise UserError(
            f"the file holds {shape} records, which do not convert to {kind} records "
            f"({kind} accepts: {accepted}); leave out --kind to import them as {DEFAULT_KIND[shape]}",
            param="kind",
        )


def normalise(
    shape: Shape, kind: RecordKind, row: dict[str, Any], *, text_cells: bool = False
) -> dict[str, Any]:
    """One row of `shape` as a `kind` record (still to be validated); ValueError says what is wrong.

    `text_cells`: the row came from a format of text cells (CSV), where nested values arrive as JSON text.
    """
    if text_cells:
        row = {k: _parsed(k, v) for k, v in row.items()}
    convert, _ = _CONVERT[kind]
    record = convert(shape, row)
    record["metadata"] = _metadata(row, _USES[shape])
    return record


_CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})


def _plain_openai_chat(row: dict[str, Any]) -> dict[str, Any] | None:
    """An OpenAI chat row whose messages are all plain `{role, content}` text turns, as the chat
    record `validate_record(chat, normalise(openai, chat, row))` makes of it; None for any other row
    (which then takes that path, and gets its exact error). Most rows of real files are plain: this
    checks them in one pass instead of converting and then validating (a copy of every message)."""
    messages = row.get("messages")
    if messages.__class__ is not list or not messages:
        return None
    try:
        for message in messages:
            if (
                message.__class__ is not dict
                or len(message) != 2
                or message.get("role") not in _CHAT_ROLES  # TypeError: an unhashable role
                or message.get("content").__class__ is not str
            ):
                return None
    except TypeError:
        return None
    metadata = row.copy()  # the row's other fields go into metadata (C-level copy and pops)
    del metadata["messages"]
    tools = metadata.pop("tools", None)
    meta = metadata.pop("metadata", None)
    if tools is not None and tools.__class__ is not list:
        return None
    if meta is not None and meta.__class__ is not dict:
        return None
    if None in metadata.values():  # rare: fields that are null are left out
        metadata = {k: v for k, v in metadata.items() if v is not None}
    if meta:
        metadata.update(meta)  # the row's own metadata wins over its other fields, as in `normalise`
    # Messages are kept as read: the encoding sorts keys, so {content, role} stores as {role, content} does.
    return {"messages": messages, "tools": tools, "metadata": metadata}


def plain_reader(shape: Shape, kind: RecordKind) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    """A one-pass reader of the plain rows of (shape, kind), where there is one."""
    return _plain_openai_chat if (shape, kind) == (Shape.openai, RecordKind.chat) else None
