"""One conversation as a file: Markdown (the branch shown, to read) or JSON (every branch, to process)."""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson

from fmops.auth import Principal
from fmops.conversations.service import ConversationService, ConversationView, MessageView

Format = Literal["md", "json"]
MEDIA_TYPES: dict[str, str] = {"md": "text/markdown; charset=utf-8", "json": "application/json"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def filename(conversation: ConversationView, fmt: Format) -> str:
    """A file name any system accepts: the title's safe characters, then the id."""
    stem = _UNSAFE.sub("-", conversation.title).strip("-._")[:60] or "conversation"
    return f"{stem}-{conversation.id[:8]}.{fmt}"


def who(m: MessageView) -> str:
    """Who answered, in words: the endpoint or model asked, the model, the prompt version."""
    parts = [m.endpoint or m.model or "the model"]
    if m.model and m.endpoint and m.model != m.endpoint:
        parts.append(f"model {m.model}")
    if m.prompt_name:
        parts.append(f"prompt {m.prompt_name} v{m.prompt_version}" if m.prompt_version else m.prompt_name)
    return " · ".join(parts)


def to_markdown(conversation: ConversationView, messages: list[MessageView], shown: list[str]) -> bytes:
    by_id = {m.id: m for m in messages}
    lines = [f"# {conversation.title}", "", f"Exported from fmops chat · {conversation.endpoint}", ""]
    for message_id in shown:
        m = by_id[message_id]
        heading = "You" if m.role == "user" else who(m)
        if m.versions > 1:
            heading += f" (version {m.version} of {m.versions})"
        lines += [f"## {heading}", "", m.content or "*(no text)*", ""]
        if m.error:
            lines += [f"> {m.error}", ""]
    return "\n".join(lines).encode()


def to_json(conversation: ConversationView, messages: list[MessageView], shown: list[str]) -> bytes:
    data: dict[str, Any] = {
        "id": conversation.id,
        "title": conversation.title,
        "endpoint": conversation.endpoint,
        "params": conversation.params,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "shown": shown,  # the branch shown, first message to last
        "messages": [  # every branch, in the order written; parent_id makes the tree
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at,
                "endpoint": m.endpoint,
                "model": m.model,
                "prompt_name": m.prompt_name,
                "prompt_version": m.prompt_version,
                "trace_id": m.trace_id,
                "error": m.error,
            }
            for m in messages
        ],
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)


def render(
    conversation: ConversationView, messages: list[MessageView], shown: list[str], fmt: Format
) -> bytes:
    return (to_markdown if fmt == "md" else to_json)(conversation, messages, shown)


def exported(
    service: ConversationService, principal: Principal, conversation_id: str, fmt: Format
) -> tuple[bytes, str, str]:
    """(the file's bytes, its media type, its name): what a download answers."""
    conversation, messages, shown = service.export(principal, conversation_id)
    return render(conversation, messages, shown, fmt), MEDIA_TYPES[fmt], filename(conversation, fmt)
