"""The chat's assistants: listed first in the picker (an endpoint published as one is offered only
as the assistant), their descriptions and starters, and what choosing one means for a conversation
(it calls the assistant's endpoint, and remembers the assistant). Blocking: call from a thread.

An assistant the person may not use is not offered, and choosing it anyway is a 404
(`AssistantService.choose`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmops.assistants import AssistantService, Choice
from fmops.assistants.service import PREFIX, usable_among
from fmops.auth import Principal
from fmops.conversations import ConversationService, ConversationView

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform


def with_assistants(
    platform: Platform,
    principal: Principal,
    conversation: ConversationView | None,
    choices: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], str | None, dict[str, Any]]:
    """The picker's choices with the usable assistants first (`assistant:<name>`, kind "assistant"),
    the assistant to select (the conversation's, or the first for a new one; None: no assistant),
    and the template's context (`assistants`: each usable one by its choice)."""
    service = AssistantService(platform.store)
    views = service.list(principal.project_id)
    # The endpoints offered are those the person may call (enabled, their `access:` lets them): an
    # assistant whose endpoint is not among them could only answer with a 404.
    offered = {name for name, kind in choices if kind == "endpoint"}
    usable = usable_among(principal, views, offered)
    published = {view.endpoint for view in views}
    picks = [(PREFIX + view.name, "assistant") for view in usable]
    rest = [(name, kind) for name, kind in choices if not (kind == "endpoint" and name in published)]
    selected = None
    if conversation is not None:
        name = service.of_conversations(principal.project_id, [conversation.id]).get(conversation.id)
        selected = PREFIX + name if name else None
    elif picks:
        selected = picks[0][0]
    return picks + rest, selected, {"assistants": {PREFIX + view.name: view for view in usable}}


def start(
    platform: Platform, principal: Principal, choice: str, service: ConversationService
) -> ConversationView:
    """A new conversation with what the picker chose (an assistant: its endpoint, remembered)."""
    assistants = AssistantService(platform.store)
    picked = assistants.choose(principal, choice)
    conversation = service.create(principal, picked.endpoint)
    if picked.assistant is not None:
        assistants.remember(principal, conversation.id, picked)
    return conversation


def switch(
    platform: Platform,
    principal: Principal,
    conversation: ConversationView,
    choice: str,
    service: ConversationService,
) -> ConversationView:
    """The conversation, talking from now on to what the picker chose."""
    assistants = AssistantService(platform.store)
    picked = assistants.choose(principal, choice)
    if picked.endpoint != conversation.endpoint:
        conversation = service.set_endpoint(principal, conversation.id, picked.endpoint)
    before = assistants.of_conversations(principal.project_id, [conversation.id]).get(conversation.id)
    if before != picked.assistant:
        assistants.remember(principal, conversation.id, Choice(picked.endpoint, picked.assistant))
    return conversation
