"""The caller's own chat conversations over the API: list or search them, read the branch shown, export
one, regenerate an answer or edit a message (answered as in the chat: `fmops.web.chat_answer`).

A conversation is private to the user who had it: another user's answers 404, whatever the role.
Regenerating and editing answer in one JSON body once the answer is saved (the chat's own routes,
`/chat/...`, stream it); a model that fails leaves a saved answer whose `error` says why, with the
call's status beside it, and the edited message is kept.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from fmops.auth import Principal, Role
from fmops.conversations import ConversationService
from fmops.conversations.export import Format, exported
from fmops.conversations.service import SEARCH_MAX_CHARS, ConversationView, MessageView
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.web.chat_answer import (
    Answered,
    AnswerParams,
    EditedMessage,
    History,
    answer,
    editing,
    regenerating,
    tailored,
)

router = APIRouter(tags=["conversations"])


class ConversationPublic(BaseModel):
    id: str
    title: str
    endpoint: str
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    snippet: str | None = None  # a search's match in a message's text (none: the title matched)


class MessagePublic(BaseModel):
    id: str
    parent_id: str | None
    role: str
    content: str
    endpoint: str | None
    model: str | None
    prompt_name: str | None
    prompt_version: int | None
    trace_id: str | None
    error: str | None
    version: int  # its place among the versions of its turn (regenerated or edited), 1-based
    versions: int
    created_at: datetime


class AnswerPublic(BaseModel):
    question: MessagePublic  # the message answered (a new version of it, for an edit)
    answer: MessagePublic  # the new answer, saved: as much as came, and `error` when the call failed
    status: int  # 200, or the status the call failed with (a guardrail's 422, an unknown model's 404)
    trace_id: str | None


def _public(c: ConversationView, snippet: str | None = None) -> ConversationPublic:
    return ConversationPublic(
        id=c.id,
        title=c.title,
        endpoint=c.endpoint,
        params=c.params,
        created_at=c.created_at,
        updated_at=c.updated_at,
        snippet=snippet,
    )


def _message(m: MessageView) -> MessagePublic:
    return MessagePublic(
        id=m.id,
        parent_id=m.parent_id,
        role=m.role,
        content=m.content,
        endpoint=m.endpoint,
        model=m.model,
        prompt_name=m.prompt_name,
        prompt_version=m.prompt_version,
        trace_id=m.trace_id,
        error=m.error,
        version=m.version,
        versions=m.versions,
        created_at=m.created_at,
    )


@router.get(
    "/api/conversations",
    response_model=list[ConversationPublic],
    summary="Your conversations, most recent first; q searches their titles and messages",
    dependencies=gate(Role.consumer),
)
def list_conversations(
    platform: PlatformDep,
    principal: PrincipalDep,
    q: Annotated[str | None, Query(max_length=4 * SEARCH_MAX_CHARS)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ConversationPublic]:
    service = ConversationService(platform.store)
    if q is not None:
        return [_public(f.conversation, f.snippet) for f in service.search(principal, q)]
    return [_public(c) for c in service.listing(principal, offset=offset).items]


@router.get(
    "/api/conversations/{conversation_id}/messages",
    response_model=list[MessagePublic],
    summary="The branch shown of one of your conversations, first message to last",
    dependencies=gate(Role.consumer),
    responses=error_responses(404),
)
def conversation_messages(
    conversation_id: str, platform: PlatformDep, principal: PrincipalDep
) -> list[MessagePublic]:
    return [_message(m) for m in ConversationService(platform.store).messages(principal, conversation_id)]


@router.get(
    "/api/conversations/{conversation_id}/export",
    summary="One of your conversations as a file: Markdown (the branch shown) or JSON (every branch)",
    dependencies=gate(Role.consumer),
    responses=error_responses(404),
)
def export_conversation(
    conversation_id: str,
    platform: PlatformDep,
    principal: PrincipalDep,
    format: Annotated[Format, Query()] = "md",
) -> Response:
    body, media_type, name = exported(ConversationService(platform.store), principal, conversation_id, format)
    return Response(
        body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'}
    )


async def _answered(
    platform: Platform,
    principal: Principal,
    conversation: ConversationView,
    asked: MessageView,
    history: History,
) -> AnswerPublic:
    request = await tailored(platform, principal, conversation, history)
    done: Answered | None = None
    # Closed with the request (the caller went away): the answer keeps what came, and why it stopped.
    async with aclosing(answer(platform, principal, conversation, asked, request)) as pieces:
        async for piece in pieces:
            if isinstance(piece, Answered):
                done = piece
    assert done is not None  # `answer` ends with the saved answer, or raises
    return AnswerPublic(
        question=_message(asked), answer=_message(done.message), status=done.status, trace_id=done.trace_id
    )


@router.post(
    "/api/conversations/{conversation_id}/messages/{message_id}/regenerate",
    response_model=AnswerPublic,
    summary="A new answer to the question an answer of yours answered: a new version of it, shown from now "
    "on (the old one is kept); temperature and max_tokens named are remembered on the conversation",
    dependencies=gate(Role.consumer),
    responses=error_responses(400, 404),
)
async def regenerate_answer(
    conversation_id: str, message_id: str, body: AnswerParams, platform: PlatformDep, principal: PrincipalDep
) -> AnswerPublic:
    conversation, asked, history = await regenerating(
        platform, principal, conversation_id, message_id, body.named()
    )
    return await _answered(platform, principal, conversation, asked, history)


@router.post(
    "/api/conversations/{conversation_id}/messages/{message_id}/edit",
    response_model=AnswerPublic,
    summary="A new version of one of your messages (its branch is kept), answered from the branch that "
    "leads to it; redacted where a guardrail policy redacts, as the chat saves it",
    dependencies=gate(Role.consumer),
    responses=error_responses(400, 404),
)
async def edit_message(
    conversation_id: str, message_id: str, body: EditedMessage, platform: PlatformDep, principal: PrincipalDep
) -> AnswerPublic:
    conversation, asked, history = await editing(
        platform, principal, conversation_id, message_id, body.content, body.named()
    )
    return await _answered(platform, principal, conversation, asked, history)
