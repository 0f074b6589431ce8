"""Starting a conversation, sending a message, regenerating an answer and editing a message: each
answer streams back as server-sent events.

The page reads the stream with fetch() (an EventSource cannot POST) and shows text as it comes.
Events are `data: <json>` lines, each with a `type`:

  start  {conversation_id, title, user_html}            the saved message, rendered
  delta  {text}                                        the next piece of the answer
  done   {html, message_id, trace_id, error, status}   the saved answer, rendered (Markdown): it
                                                       replaces the text

A regenerated answer is a new version (sibling) of the answer it replaces, an edited message a new
version of the message; both are answered from the branch that leads to them (the history sent is
the branch, never the other versions). Temperature and max tokens a request names are remembered on
the conversation and apply to its answers from then on.

The person's message is saved before the model is called and the answer (or as much of it as came,
with the reason it stopped) after: nothing typed is lost when the model fails. Errors before the
first token (a quota's 429, an unknown model's 404, an upstream's 502) end the stream the same way,
as a saved answer that says what went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal
from fmops.auth.sessions import SignedIn
from fmops.conversations import ConversationService, ConversationView, MessageView
from fmops.conversations.service import MESSAGE_MAX_CHARS, PARAMS
from fmops.errors import FmopsError, NotFound
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.platform import PlatformDep
from fmops.tailoring import TailoringService
from fmops.web import chat_assistants
from fmops.web.chat_redaction import as_sent, stored_form
from fmops.web.chat_views import message_context
from fmops.web.deps import SignedInDep
from fmops.web.templating import environment

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

# The history sent with each message: the newest messages that fit both bounds (a small local
# model has a context of a couple of thousand tokens; ~4 characters make a token).
HISTORY_MESSAGES = 20
HISTORY_CHARS = 6_000
STOPPED = "the answer stopped: the page was closed or Stop was pressed"
GONE = (
    "this conversation no longer exists (deleted, perhaps in another tab): "
    "your text is kept in the box, copy it before you leave"
)

Name = Annotated[str, Field(min_length=1, max_length=200)]


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: Name


class Params(BaseModel):
    """The answers' parameters: named ones are remembered on the conversation (null: the model's default)."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0, le=2)


class Edited(Params):
    # One more than the service's limit, so an over-long message gets its readable message.
    content: str = Field(max_length=MESSAGE_MAX_CHARS + 1)


class NewMessage(Edited):
    endpoint: Name | None = None


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

    def prepare() -> tuple[ConversationView, MessageView, list[dict[str, str]]]:
        asked = service.append(principal, conversation_id, "user", content)
        _remember(service, principal, conversation_id, body)  # once the message was taken
        history = _branch(service, principal, conversation_id, asked)
        sent = as_sent(history, asked, body.content)
        return service.get(principal, conversation_id), asked, sent  # titled by its first message

    conversation, asked, history = await run_in_threadpool(prepare)
    return _streamed(platform, found, conversation, asked, history)


@router.post("/chat/conversations/{conversation_id}/messages/{message_id}/regenerate")
async def regenerate(
    conversation_id: str, message_id: str, body: Params, platform: PlatformDep, found: SignedInDep
) -> Response:
    """A new answer to the question `message_id` answered: its sibling, shown from now on (both kept)."""
    principal = found.principal
    service = ConversationService(platform.store)

    def prepare() -> tuple[ConversationView, MessageView, list[dict[str, str]]]:
        conversation = _remember(service, principal, conversation_id, body)
        asked = service.question(principal, conversation_id, message_id)
        history = _branch(service, principal, conversation_id, asked)
        return conversation, asked, history

    conversation, asked, history = await run_in_threadpool(prepare)
    return _streamed(platform, found, conversation, asked, history)


@router.post("/chat/conversations/{conversation_id}/messages/{message_id}/edit")
async def edit_message(
    conversation_id: str, message_id: str, body: Edited, platform: PlatformDep, found: SignedInDep
) -> Response:
    """A new version of one of the person's messages (a sibling of it; the old branch is kept), answered."""
    principal = found.principal
    service = ConversationService(platform.store)
    try:
        conversation = await run_in_threadpool(_remember, service, principal, conversation_id, body)
        content = await stored_form(platform, principal, conversation, body.content)

        def prepare() -> tuple[MessageView, list[dict[str, str]]]:
            asked = service.edit(principal, conversation_id, message_id, content)
            history = _branch(service, principal, conversation_id, asked)
            return asked, as_sent(history, asked, body.content)

        asked, history = await run_in_threadpool(prepare)
    except NotFound as exc:
        # Deleted meanwhile (another tab): say so, and hand back what was typed.
        gone = "no such conversation" in exc.message
        message = GONE if gone else exc.message + ": your text is kept in the box"
        return JSONResponse(
            {
                "error": {"message": message, "type": exc.error_type, "code": "not_found"},
                "content": body.content,
            },
            status_code=404,
        )
    return _streamed(platform, found, conversation, asked, history)


def _branch(
    service: ConversationService, principal: Principal, conversation_id: str, asked: MessageView
) -> list[dict[str, str]]:
    """The history sent with `asked`: the branch that leads to it, within the history bounds."""
    return service.history(
        principal, conversation_id, max_messages=HISTORY_MESSAGES, max_chars=HISTORY_CHARS, until=asked.id
    )


def _remember(
    service: ConversationService, principal: Principal, conversation_id: str, body: Params
) -> ConversationView:
    """Keep the parameters the request named (null forgets one) for this conversation's answers."""
    named = {k: getattr(body, k) for k in PARAMS if k in body.model_fields_set}
    if named:
        return service.set_params(principal, conversation_id, named)
    return service.get(principal, conversation_id)


def _streamed(
    platform: Platform,
    found: SignedIn,
    conversation: ConversationView,
    asked: MessageView,
    history: list[dict[str, str]],
) -> StreamingResponse:
    """The answer to `asked`, streamed, given the history that ends with it."""
    request_body = ChatCompletionRequest.model_validate(
        {
            "model": conversation.endpoint,
            "messages": history,
            "stream": True,
            # Unset: the model's recommended settings apply (`fmops models show`), as for `fmops chat`.
            "max_tokens": conversation.params.get("max_tokens"),
            "temperature": conversation.params.get("temperature"),
            # Recorded on the trace, so the person may give feedback on it (and engineers filter by it).
            "user": found.principal.user_name,
        }
    )
    return StreamingResponse(
        _answer(platform, found, conversation, asked, request_body),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _gateway_event(raw: bytes) -> dict[str, Any] | None:
    """One event the gateway's stream yields (`data: {...}`), or None for `[DONE]` and the like."""
    text = raw.decode(errors="replace").strip()
    if not text.startswith("data:"):
        return None
    payload = text[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        found = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(context)


async def _answer(
    platform: Platform,
    found: SignedIn,
    conversation: ConversationView,
    asked: MessageView,
    request: ChatCompletionRequest,
) -> AsyncIterator[bytes]:
    principal = found.principal
    # The person's custom instructions first, as a marked system message, unless switched off here.
    tailoring = TailoringService(platform.store)
    request = await run_in_threadpool(tailoring.tailor, principal, conversation.id, request, HISTORY_CHARS)
    yield _event(
        {
            "type": "start",
            "conversation_id": conversation.id,
            "title": conversation.title,
            "user_html": _render("chat/_message.html", message_context(platform, found, asked)),
        }
    )
    parts: list[str] = []
    trace_id: str | None = None
    model: str | None = None
    error: str | None = None
    served: dict[str, Any] = {}
    status = 200
    try:
        try:
            result = await platform.gateway.stream(principal, request, conversation.id)
        except FmopsError as exc:
            error, status, trace_id = exc.message, exc.status_code, exc.trace_id
        else:
            trace_id = result.record.trace_id
            served = _served(result.record)
            async with aclosing(result.events) as events:  # type: ignore[type-var]
                async for raw in events:
                    data = _gateway_event(raw)
                    if data is None:
                        continue
                    if isinstance(data.get("error"), dict):
                        # A guardrail that cut the answer says why in its message (never what it
                        # matched): shown as the answer's error, as a refusal before the stream is.
                        failure = data["error"]
                        error = str(failure.get("message") or "the model failed")
                        status = 422 if failure.get("code") == "guardrail_blocked" else 502
                        continue
                    model = data.get("model") or model
                    for choice in data.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            parts.append(text)
                            yield _event({"type": "delta", "text": text})
    except BaseException:
        # Disconnected (or failed) midway: keep what came, and why it stopped, even while cancelled.
        with anyio.CancelScope(shield=True):
            await _save(
                platform, principal, conversation, asked, parts, trace_id, model, error or STOPPED, served
            )
        raise
    saved = await _save(platform, principal, conversation, asked, parts, trace_id, model, error, served)
    context = await run_in_threadpool(message_context, platform, found, saved)
    yield _event(
        {
            "type": "done",
            "html": _render("chat/_message.html", context),
            "message_id": saved.id,
            "trace_id": trace_id,
            "error": error,
            "status": status,
        }
    )


def _served(record: Any) -> dict[str, Any]:
    """What the gateway's span says answered: the model an endpoint routed to, its prompt version."""
    return {
        "model": record.model if record.endpoint else None,
        "prompt_name": record.prompt_name,
        "prompt_version": record.prompt_version,
    }


async def _save(
    platform: Platform,
    principal: Principal,
    conversation: ConversationView,
    asked: MessageView,
    parts: list[str],
    trace_id: str | None,
    model: str | None,
    error: str | None,
    served: dict[str, Any],
) -> MessageView:
    service = ConversationService(platform.store)
    try:
        return await run_in_threadpool(
            service.append,
            principal,
            conversation.id,
            "assistant",
            "".join(parts),
            parent_id=asked.id,  # its question, whatever was added meanwhile
            trace_id=trace_id,
            model=served.get("model") or model or conversation.endpoint,
            error=error,
            endpoint=conversation.endpoint,
            prompt_name=served.get("prompt_name"),
            prompt_version=served.get("prompt_version"),
        )
    except Exception:
        log.exception("could not save a chat answer", extra={"trace": trace_id})
        raise
