"""Starting a conversation, sending a message, regenerating an answer and editing a message: each
answer streams back as server-sent events.

The page reads the stream with fetch() (an EventSource cannot POST) and shows text as it comes.
Events are `data: <json>` lines, each with a `type`:

  start  {conversation_id, title, user_html}            the saved message, rendered
  delta  {text}                                        the next piece of the answer
  done   {html, message_id, trace_id, error, status}   the saved answer, rendered (Markdown): it
                                                       replaces the text

How a message is answered, saved and branched (the same for the conversations API) is
`web.chat_answer`: nothing typed is lost when the model fails, and errors before the first token
(a quota's 429, an unknown model's 404, an upstream's 502) end the stream the same way, as a saved
answer that says what went wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fmops.auth.sessions import SignedIn
from fmops.conversations import ConversationService, ConversationView, MessageView
from fmops.errors import NotFound
from fmops.platform import PlatformDep
from fmops.web import chat_assistants
from fmops.web.chat_answer import (
    AnswerParams,
    EditedMessage,
    History,
    answer,
    branch,
    editing,
    regenerating,
    remember,
    tailored,
)
from fmops.web.chat_redaction import as_sent, stored_form
from fmops.web.chat_views import message_context
from fmops.web.deps import SignedInDep
from fmops.web.templating import environment

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform

router = APIRouter(include_in_schema=False)

GONE = (
    "this conversation no longer exists (deleted, perhaps in another tab): "
    "your text is kept in the box, copy it before you leave"
)

Name = Annotated[str, Field(min_length=1, max_length=200)]


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: Name


class NewMessage(EditedMessage):
    endpoint: Name | None = None


def gone_text(exc: NotFound) -> str:
    """What an edit of a conversation or message deleted meanwhile (another tab) says."""
    gone = "no such conversation" in exc.message
    return GONE if gone else exc.message + ": your text is kept in the box"


@router.post("/chat/conversations")
async def start_conversation(body: NewConversation, platform: PlatformDep, found: SignedInDep) -> Response:
    service = ConversationService(platform.store)
    # An assistant calls its endpoint (a 404 for one the person may not use): web.chat_assistants.
    conversation = await run_in_threadpool(
        chat_assistants.start, platform, found.principal, body.endpoint, service
    )
    return JSONResponse({"id": conversation.id, "url": f"/?c={conversation.id}"}, status_code=201)


@router.post("/chat/conversations/{conversation_id}/messages")
async def send_message(
    conversation_id: str, body: NewMessage, request: Request, platform: PlatformDep, found: SignedInDep
) -> Response:
    principal = found.principal
    service = ConversationService(platform.store)

    def target() -> ConversationView:
        conversation = service.get(principal, conversation_id)
        if body.endpoint:
            conversation = chat_assistants.switch(platform, principal, conversation, body.endpoint, service)
        return conversation

    # Saved as the model gets it: redacted where a guardrail policy redacts (web.chat_redaction).
    content = await stored_form(platform, principal, await run_in_threadpool(target), body.content)

    def prepare() -> tuple[ConversationView, MessageView, History]:
        asked = service.append(principal, conversation_id, "user", content)
        remember(service, principal, conversation_id, body.named())  # once the message was taken
        history = branch(service, principal, conversation_id, asked)
        sent = as_sent(history, asked, body.content)
        return service.get(principal, conversation_id), asked, sent  # titled by its first message

    conversation, asked, history = await run_in_threadpool(prepare)
    return _streamed(platform, found, conversation, asked, history)


@router.post("/chat/conversations/{conversation_id}/messages/{message_id}/regenerate")
async def regenerate(
    conversation_id: str, message_id: str, body: AnswerParams, platform: PlatformDep, found: SignedInDep
) -> Response:
    """A new answer to the question `message_id` answered: its sibling, shown from now on (both kept)."""
    conversation, asked, history = await regenerating(
        platform, found.principal, conversation_id, message_id, body.named()
    )
    return _streamed(platform, found, conversation, asked, history)


@router.post("/chat/conversations/{conversation_id}/messages/{message_id}/edit")
async def edit_message(
    conversation_id: str, message_id: str, body: EditedMessage, platform: PlatformDep, found: SignedInDep
) -> Response:
    """A new version of one of the person's messages (a sibling of it; the old branch is kept), answered."""
    try:
        conversation, asked, history = await editing(
            platform, found.principal, conversation_id, message_id, body.content, body.named()
        )
    except NotFound as exc:
        # Deleted meanwhile (another tab): say so, and hand back what was typed.
        return JSONResponse(
            {
                "error": {"message": gone_text(exc), "type": exc.error_type, "code": "not_found"},
                "content": body.content,
            },
            status_code=404,
        )
    return _streamed(platform, found, conversation, asked, history)


def _streamed(
    platform: Platform, found: SignedIn, conversation: ConversationView, asked: MessageView, history: History
) -> StreamingResponse:
    """The answer to `asked`, streamed, given the history that ends with it."""
    return StreamingResponse(
        _events(platform, found, conversation, asked, history),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(context)


async def _events(
    platform: Platform, found: SignedIn, conversation: ConversationView, asked: MessageView, history: History
) -> AsyncIterator[bytes]:
    request = await tailored(platform, found.principal, conversation, history)
    yield _event(
        {
            "type": "start",
            "conversation_id": conversation.id,
            "title": conversation.title,
            "user_html": _render("chat/_message.html", message_context(platform, found, asked)),
        }
    )
    # Closed with this stream (the page went away): the answer keeps what came, and why it stopped.
    async with aclosing(answer(platform, found.principal, conversation, asked, request)) as pieces:
        async for piece in pieces:
            if isinstance(piece, str):
                yield _event({"type": "delta", "text": piece})
                continue
            context = await run_in_threadpool(message_context, platform, found, piece.message)
            yield _event(
                {
                    "type": "done",
                    "html": _render("chat/_message.html", context),
                    "message_id": piece.message.id,
                    "trace_id": piece.trace_id,
                    "error": piece.error,
                    "status": piece.status,
                }
            )
