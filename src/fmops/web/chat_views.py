"""What the chat's templates show: a conversation with its messages and feedback, the endpoint
picker, one message, the usage meters. Shared by the page routes (`routers/chat.py`) and the
streaming route (`routers/chat_stream.py`). Blocking: call from a thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmops.auth import Principal
from fmops.auth.sessions import SignedIn
from fmops.catalog import DEFAULT_CHAT_MODEL
from fmops.conversations import ConversationService, ConversationView, MessageView
from fmops.conversations.service import MESSAGE_MAX_CHARS, TITLE_MAX
from fmops.conversations.usage import usage
from fmops.endpoints.service import served_endpoints
from fmops.errors import FmopsError
from fmops.providers.registry import get_provider_class
from fmops.web.chat_assistants import with_assistants
from fmops.web.markdown import render_markdown

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform

# --- what the person may talk to ---------------------------------------------------------------


def chat_models(platform: Platform, principal: Principal) -> list[tuple[str, str]]:
    """(name, "endpoint" | "model") the caller may chat with, as /v1/models lists them minus the
    embedding models: the default model first, then endpoints (what engineers deploy for people;
    those whose `access:` leaves the caller out are not offered), then the other models."""
    project_id = principal.project_id
    models = []
    for entry in platform.catalog.models(project_id).values():
        try:
            chats = entry.capabilities.get("chat", get_provider_class(entry.provider).capabilities.chat)
        except FmopsError:  # a provider whose plugin is not installed here
            continue
        if chats:
            models.append(entry.alias)
    models.sort()
    first = [(DEFAULT_CHAT_MODEL, "model")] if DEFAULT_CHAT_MODEL in models else []
    served = served_endpoints(platform.store, project_id, principal)
    endpoints = [name for name, _ in served if name not in models]
    rest = [(name, "model") for name in models if name != DEFAULT_CHAT_MODEL]
    return first + [(name, "endpoint") for name in endpoints] + rest


def _default_choice(choices: list[tuple[str, str]]) -> str:
    names = [name for name, _ in choices]
    return DEFAULT_CHAT_MODEL if DEFAULT_CHAT_MODEL in names else (names[0] if names else "")


# --- rendering helpers -------------------------------------------------------------------------


def thread_context(
    platform: Platform, found: SignedIn, conversation: ConversationView | None
) -> dict[str, Any]:
    """What `chat/_thread.html` needs: the conversation, its messages with feedback, the picker."""
    principal = found.principal
    service = ConversationService(platform.store)
    messages: list[MessageView] = []
    if conversation is not None:
        messages = service.messages(principal, conversation.id)
    feedback = service.feedback(principal, [m.trace_id for m in messages if m.trace_id])
    # Assistants first (web.chat_assistants); the conversation's, or the first, is selected.
    choices, chosen, assistants = with_assistants(
        platform, principal, conversation, chat_models(platform, principal)
    )
    selected = chosen or (conversation.endpoint if conversation is not None else _default_choice(choices))
    if selected and selected not in {name for name, _ in choices}:
        choices.insert(0, (selected, "unavailable"))  # keep what the conversation used, visibly
    return {
        "conversation": conversation,
        "messages": messages,
        "feedback": feedback,
        "choices": choices,
        **assistants,
        "selected": selected,
        "md": render_markdown,
        "message_max": MESSAGE_MAX_CHARS,
        "title_max": TITLE_MAX,
    }


def message_context(platform: Platform, found: SignedIn, message: MessageView) -> dict[str, Any]:
    feedback = ConversationService(platform.store).feedback(
        found.principal, [message.trace_id] if message.trace_id else []
    )
    return {"m": message, "feedback": feedback, "md": render_markdown}


def usage_context(platform: Platform, found: SignedIn) -> dict[str, Any]:
    return {"meters": usage(platform.store, found.principal, with_key=found.with_key)}
