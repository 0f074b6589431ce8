"""Answering a message of a chat conversation, for the chat's routes (server-sent events, with HTML:
`routers/chat_stream.py`) and the conversations API (JSON: `fmops.server.routers.conversations`) alike.

    asked, history = await regenerating(...) / editing(...)   # the question, and the branch sent
    request = await tailored(platform, principal, conversation, history)
    async for piece in answer(platform, principal, conversation, asked, request):
        ...                                                    # text as it comes, then an Answered

The person's message is saved before the model is called and the answer (or as much of it as came,
with the reason it stopped) after: nothing typed is lost when the model fails. A regenerated answer
is a new version (sibling) of the answer it replaces, an edited message a new version of the
message; both are answered from the branch that leads to them (the history sent is the branch,
never the other versions). Temperature and max tokens a request names are remembered on the
conversation and apply to its answers from then on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal
from fmops.conversations import ConversationService, ConversationView, MessageView
from fmops.conversations.service import MESSAGE_MAX_CHARS, PARAMS
from fmops.errors import FmopsError
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.tailoring import TailoringService
from fmops.web.chat_redaction import as_sent, stored_form

if TYPE_CHECKING:  # the platform imports the web app, which imports this
    from fmops.platform import Platform

log = logging.getLogger(__name__)

# The history sent with each message: the newest messages that fit both bounds (a small local
# model has a context of a couple of thousand tokens; ~4 characters make a token).
HISTORY_MESSAGES = 20
HISTORY_CHARS = 6_000
STOPPED = "the answer stopped: the page was closed or Stop was pressed"
History = list[dict[str, str]]


class AnswerParams(BaseModel):
    """The answers' parameters: named ones are remembered on the conversation (null: the model's default)."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0, le=2)

    def named(self) -> dict[str, Any]:
        """Those the request named (null: forget it), to remember on the conversation."""
        return {k: getattr(self, k) for k in PARAMS if k in self.model_fields_set}


class EditedMessage(AnswerParams):
    # One more than the service's limit, so an over-long message gets its readable message.
    content: str = Field(max_length=MESSAGE_MAX_CHARS + 1)


@dataclass(frozen=True)
class Answered:
    """The saved answer, and how the call went (`status`: 200, or the gateway's error status)."""

    message: MessageView
    trace_id: str | None
    error: str | None
    status: int


def branch(
    service: ConversationService, principal: Principal, conversation_id: str, asked: MessageView
) -> History:
    """The history sent with `asked`: the branch that leads to it, within the history bounds."""
    return service.history(
        principal, conversation_id, max_messages=HISTORY_MESSAGES, max_chars=HISTORY_CHARS, until=asked.id
    )


def remember(
    service: ConversationService, principal: Principal, conversation_id: str, named: Mapping[str, Any]
) -> ConversationView:
    """Keep the parameters the request named (None forgets one) for this conversation's answers."""
    kept = {k: v for k, v in named.items() if k in PARAMS}
    if kept:
        return service.set_params(principal, conversation_id, kept)
    return service.get(principal, conversation_id)


async def regenerating(
    platform: Platform, principal: Principal, conversation_id: str, message_id: str, params: Mapping[str, Any]
) -> tuple[ConversationView, MessageView, History]:
    """The conversation, the question `message_id` answered, and the branch to send for a new answer."""
    service = ConversationService(platform.store)

    def prepare() -> tuple[ConversationView, MessageView, History]:
        conversation = remember(service, principal, conversation_id, params)
        asked = service.question(principal, conversation_id, message_id)
        return conversation, asked, branch(service, principal, conversation_id, asked)

    return await run_in_threadpool(prepare)


async def editing(
    platform: Platform,
    principal: Principal,
    conversation_id: str,
    message_id: str,
    content: str,
    params: Mapping[str, Any],
) -> tuple[ConversationView, MessageView, History]:
    """The new version of the person's message `message_id`, saved (redacted where a guardrail policy
    redacts: `web.chat_redaction`), and the branch to send with it. NotFound when the conversation or
    the message is gone (the caller hands the text back)."""
    service = ConversationService(platform.store)
    conversation = await run_in_threadpool(remember, service, principal, conversation_id, params)
    stored = await stored_form(platform, principal, conversation, content)

    def prepare() -> tuple[MessageView, History]:
        asked = service.edit(principal, conversation_id, message_id, stored)
        return asked, as_sent(branch(service, principal, conversation_id, asked), asked, content)

    asked, history = await run_in_threadpool(prepare)
    return conversation, asked, history


def request_for(
    conversation: ConversationView, principal: Principal, history: History
) -> ChatCompletionRequest:
    """The gateway request that answers the branch `history` in `conversation`."""
    return ChatCompletionRequest.model_validate(
        {
            "model": conversation.endpoint,
            "messages": history,
            "stream": True,
            # Unset: the model's recommended settings apply (`fmops models show`), as for `fmops chat`.
            "max_tokens": conversation.params.get("max_tokens"),
            "temperature": conversation.params.get("temperature"),
            # Recorded on the trace, so the person may give feedback on it (and engineers filter by it).
            "user": principal.user_name,
        }
    )


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


async def tailored(
    platform: Platform, principal: Principal, conversation: ConversationView, history: History
) -> ChatCompletionRequest:
    """The request that answers `history`: the person's custom instructions first, as a marked
    system message, unless switched off in this conversation."""
    return await run_in_threadpool(
        TailoringService(platform.store).tailor,
        principal,
        conversation.id,
        request_for(conversation, principal, history),
        HISTORY_CHARS,
    )


async def answer(
    platform: Platform,
    principal: Principal,
    conversation: ConversationView,
    asked: MessageView,
    request: ChatCompletionRequest,
) -> AsyncGenerator[str | Answered, None]:
    """The answer to `asked` (`request`: `tailored`): each piece of text as it comes, then the saved
    answer. Errors before the first token (a quota's 429, an unknown model's 404, a guardrail's
    refusal) end it the same way, as a saved answer that says what went wrong."""
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
                            yield text
    except BaseException:
        # Disconnected (or failed) midway: keep what came, and why it stopped, even while cancelled.
        with anyio.CancelScope(shield=True):
            await _save(
                platform, principal, conversation, asked, parts, trace_id, model, error or STOPPED, served
            )
        raise
    saved = await _save(platform, principal, conversation, asked, parts, trace_id, model, error, served)
    yield Answered(saved, trace_id, error, status)


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
