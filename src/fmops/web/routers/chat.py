"""The consumers' chat at `/`: conversations, the endpoint picker, feedback on replies, usage, and the
conversation tools that need no model: switching a message's version, search, export.

Every signed-in role may chat. Conversations are private to their user (another user's is a 404).
The message route, which streams the model's answer, lives in `chat_stream.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.conversations import ConversationService
from fmops.conversations.export import Format, exported
from fmops.conversations.service import SEARCH_MAX_CHARS, TITLE_MAX
from fmops.errors import NotFound, UserError
from fmops.feedback import FeedbackService, parse_feedback
from fmops.platform import PlatformDep
from fmops.web.chat_views import message_context, thread_context, usage_context
from fmops.web.deps import SignedInDep
from fmops.web.routers import chat_stream
from fmops.web.templating import render

router = APIRouter(include_in_schema=False)
router.include_router(chat_stream.router)

FEEDBACK_MAX_CHARS = 20_000


# --- the page and its fragments ----------------------------------------------------------------


@router.get("/")
async def chat_page(
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    c: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    def load() -> dict[str, Any]:
        service = ConversationService(platform.store)
        conversation = service.get(found.principal, c) if c else None
        page = service.listing(found.principal)
        return {
            **thread_context(platform, found, conversation),
            **usage_context(platform, found),
            "conversations": page.items,
            "next_offset": page.next_offset,
        }

    return render(request, "chat/page.html", await run_in_threadpool(load))


@router.get("/chat/conversations")
async def conversation_list(
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    page = await run_in_threadpool(
        ConversationService(platform.store).listing, found.principal, offset=offset
    )
    context = {"conversations": page.items, "next_offset": page.next_offset, "conversation": None}
    return render(request, "chat/_list.html", context)


@router.get("/chat/conversations/{conversation_id}")
async def conversation_thread(
    conversation_id: str, request: Request, platform: PlatformDep, found: SignedInDep
) -> Response:
    def load() -> dict[str, Any]:
        conversation = ConversationService(platform.store).get(found.principal, conversation_id)
        return thread_context(platform, found, conversation)

    return render(request, "chat/_thread.html", await run_in_threadpool(load))


@router.patch("/chat/conversations/{conversation_id}")
async def rename_conversation(
    conversation_id: str,
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    title: Annotated[str, Form(max_length=4 * TITLE_MAX)],
) -> Response:
    service = ConversationService(platform.store)
    conversation = await run_in_threadpool(service.rename, found.principal, conversation_id, title)
    return render(request, "chat/_renamed.html", {"c": conversation, "conversation": None})


@router.delete("/chat/conversations/{conversation_id}")
async def delete_conversation(
    conversation_id: str, request: Request, platform: PlatformDep, found: SignedInDep
) -> Response:
    await run_in_threadpool(ConversationService(platform.store).delete, found.principal, conversation_id)
    response = Response(status_code=200)  # an empty body: the list item is swapped away
    if f"c={conversation_id}" in request.headers.get("hx-current-url", ""):
        response.headers["hx-redirect"] = "/"  # the open conversation is gone: start a new one
    return response


@router.get("/chat/conversations/{conversation_id}/messages")
async def conversation_messages(
    conversation_id: str, request: Request, platform: PlatformDep, found: SignedInDep
) -> Response:
    """The branch shown (after a regenerate or an edit, the page reloads it: versions and arrows)."""

    def load() -> dict[str, Any]:
        conversation = ConversationService(platform.store).get(found.principal, conversation_id)
        return thread_context(platform, found, conversation)

    return render(request, "chat/_messages.html", await run_in_threadpool(load))


@router.post("/chat/conversations/{conversation_id}/messages/{message_id}/show")
async def show_version(
    conversation_id: str, message_id: str, request: Request, platform: PlatformDep, found: SignedInDep
) -> Response:
    """Show another version of a turn (the arrows): the branch through it is shown and continued."""

    def switch() -> dict[str, Any]:
        conversation = ConversationService(platform.store).show(found.principal, conversation_id, message_id)
        return thread_context(platform, found, conversation)

    return render(request, "chat/_messages.html", await run_in_threadpool(switch))


@router.get("/chat/search")
async def search_conversations(
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    q: Annotated[str, Query(max_length=4 * SEARCH_MAX_CHARS)] = "",
) -> Response:
    """The list, narrowed to the conversations whose title or messages hold `q` (empty: all of them)."""
    service = ConversationService(platform.store)
    if not q.strip():
        page = await run_in_threadpool(service.listing, found.principal)
        listed = {"conversations": page.items, "next_offset": page.next_offset, "conversation": None}
        return render(request, "chat/_list.html", listed)
    matches = await run_in_threadpool(service.search, found.principal, q)
    context: dict[str, Any] = {
        "conversations": [m.conversation for m in matches],
        "snippets": {m.conversation.id: m.snippet for m in matches if m.snippet},
        "next_offset": None,
        "conversation": None,
        "searched": q,
    }
    return render(request, "chat/_list.html", context)


@router.get("/chat/conversations/{conversation_id}/export")
async def export_conversation(
    conversation_id: str,
    platform: PlatformDep,
    found: SignedInDep,
    format: Annotated[Format, Query()] = "md",
) -> Response:
    """A download: Markdown (the branch shown) or JSON (every branch)."""
    service = ConversationService(platform.store)
    body, media_type, name = await run_in_threadpool(
        exported, service, found.principal, conversation_id, format
    )
    return Response(
        body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'}
    )


@router.get("/chat/usage")
async def usage_meter(request: Request, platform: PlatformDep, found: SignedInDep) -> Response:
    return render(request, "chat/_usage.html", await run_in_threadpool(usage_context, platform, found))


# --- feedback on a reply -----------------------------------------------------------------------


def _score(kind: str, trace_id: str, text: str) -> dict[str, Any]:
    if kind in ("up", "down"):
        return {"trace_id": trace_id, "kind": "thumbs", "value": 1 if kind == "up" else -1}
    text = text.strip()
    if not text:
        what = "comment" if kind == "comment" else "better answer"
        raise UserError(f"write your {what} first", param="text")
    if kind == "comment":
        return {"trace_id": trace_id, "kind": "comment", "comment": text}
    return {
        "trace_id": trace_id,
        "kind": "correction",
        "corrected_output": {"role": "assistant", "content": text},
    }


@router.post("/chat/messages/{message_id}/feedback")
async def give_feedback(
    message_id: str,
    request: Request,
    platform: PlatformDep,
    found: SignedInDep,
    kind: Annotated[Literal["up", "down", "comment", "correction"], Form()],
    text: Annotated[str, Form(max_length=FEEDBACK_MAX_CHARS)] = "",
) -> Response:
    def record() -> dict[str, Any]:
        message = ConversationService(platform.store).message(found.principal, message_id)
        if message.role != "assistant" or not message.trace_id:
            raise NotFound("this message has no answer to give feedback on")
        body = parse_feedback(_score(kind, message.trace_id, text))
        FeedbackService(platform.store, platform.tracer).record(found.principal, body)
        return message_context(platform, found, message)

    context = await run_in_threadpool(record)
    return render(request, "chat/_feedback.html", {**context, "saved": kind})
