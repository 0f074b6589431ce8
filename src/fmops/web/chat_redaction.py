"""The consumer chat keeps what a person sent as the model gets it: where a `redact` or `mask` guardrail
policy applies to the conversation's model or endpoint, the saved message (and so the page, the
history sent with later messages and every reload) holds `[EMAIL]` where they typed an address.

The message is saved before the model is called (nothing typed is lost when the model fails), so its
stored form is worked out first by the gateway with the call's own policies
(`Gateway.rewritten_input`); the call is then sent the message as typed and runs its policies again,
each decision recorded on its trace (`redacted_by`, the `guardrail` spans), so the model and the trace
see the redacted form only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmops.auth import Principal
from fmops.conversations import ConversationView, MessageView
from fmops.conversations.service import storable_text
from fmops.gateway.schemas import ChatCompletionRequest

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform


async def stored_form(
    platform: Platform, principal: Principal, conversation: ConversationView, content: str
) -> str:
    """`content` as the conversation stores it: rewritten by the input policies that redact or mask
    for a call to the conversation's model or endpoint (sticky variants by the conversation)."""
    if not content.strip():
        return content  # refused when saved: "write a message first"
    request = ChatCompletionRequest.model_validate(
        {"model": conversation.endpoint, "messages": [{"role": "user", "content": content}]}
    )
    messages = await platform.gateway.rewritten_input(principal, request, conversation.id)
    stored = messages[-1].get("content") if messages else None
    return stored if isinstance(stored, str) else content


def as_sent(history: list[dict[str, str]], asked: MessageView, content: str) -> list[dict[str, str]]:
    """The history to send, its newest message (the saved `asked`) as the person typed it, so that
    the call's own policies find and record what they rewrite. Unchanged when nothing was rewritten."""
    typed = storable_text(content)
    if typed == asked.content or not history:
        return history
    last = history[-1]
    if last["role"] != "user" or last["content"] != asked.content:
        return history  # a message saved meanwhile in another tab is the newest: send what is saved
    return [*history[:-1], {"role": "user", "content": typed}]
