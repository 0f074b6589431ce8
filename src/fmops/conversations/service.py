"""Chat conversations: list, create, rename, delete, read, and append their messages.

Every call is scoped to the caller's project AND user: another user's conversation answers 404,
whatever the caller's role, as if it did not exist (a chat is private to the person who had it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fmops.auth import Principal
from fmops.auth.service import storable
from fmops.errors import NotFound, UserError
from fmops.store import Store, utcnow
from fmops.store.models import Conversation, ConversationMessage, Score

NEW_TITLE = "New conversation"
TITLE_MAX = 200
AUTO_TITLE_CHARS = 60  # a new conversation is named after the start of its first message
MESSAGE_MAX_CHARS = 20_000  # what a person may send in one message
REPLY_MAX_CHARS = 200_000  # what is kept of one model answer
PAGE_SIZE = 30
THREAD_LIMIT = 500  # messages shown of one conversation (the newest)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: str
    title: str
    endpoint: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    conversation_id: str
    seq: int
    role: str  # user | assistant
    content: str
    trace_id: str | None
    model: str | None
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ConversationView]
    next_offset: int | None  # None: this was the last page


@dataclass(slots=True)
class ReplyFeedback:
    """What the signed-in person said about one reply (their latest of each kind)."""

    thumbs: int | None = None  # 1 up, -1 down
    comment: str | None = None
    correction: str | None = None


def _view(row: Conversation) -> ConversationView:
    return ConversationView(row.id, row.title, row.endpoint, row.created_at, row.updated_at)


def _message(row: ConversationMessage) -> MessageView:
    return MessageView(
        row.id,
        row.conversation_id,
        row.seq,
        row.role,
        row.content,
        row.trace_id,
        row.model,
        row.error,
        row.created_at,
    )


def storable_text(text: str) -> str:
    """Text any backend stores: PostgreSQL refuses NUL, no backend encodes a lone surrogate."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode()


def clean_title(title: str) -> str:
    title = _SPACES.sub(" ", storable_text(title)).strip()
    if not title:
        raise UserError("a conversation's title cannot be empty", param="title")
    if len(title) > TITLE_MAX:
        raise UserError(f"a title has at most {TITLE_MAX} characters", param="title")
    return title


def _auto_title(content: str) -> str:
    text = _SPACES.sub(" ", content).strip()
    if len(text) <= AUTO_TITLE_CHARS:
        return text or NEW_TITLE
    return text[: AUTO_TITLE_CHARS - 1].rstrip() + "…"


def _correction_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return value if isinstance(value, str) else str(value)


class ConversationService:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- conversations ---------------------------------------------------------------------------

    def listing(self, principal: Principal, *, offset: int = 0, limit: int = PAGE_SIZE) -> Page:
        """The caller's conversations, most recently active first."""
        offset, limit = max(offset, 0), min(max(limit, 1), 200)
        with self.store.session() as session:
            rows = session.scalars(
                select(Conversation)
                .where(
                    Conversation.project_id == principal.project_id, Conversation.user_id == principal.user_id
                )
                .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
                .offset(offset)
                .limit(limit + 1)
            ).all()
        more = len(rows) > limit
        return Page([_view(r) for r in rows[:limit]], offset + limit if more else None)

    def create(self, principal: Principal, endpoint: str, title: str | None = None) -> ConversationView:
        endpoint = endpoint.strip()
        if not endpoint or len(endpoint) > 200 or not storable(endpoint):
            raise UserError("pick a model or endpoint to talk to", param="endpoint")
        now = utcnow()
        row = Conversation(
            project_id=principal.project_id,
            user_id=principal.user_id,
            title=clean_title(title) if title is not None else NEW_TITLE,
            endpoint=endpoint,
            created_at=now,
            updated_at=now,
        )
        with self.store.session() as session:
            session.add(row)
        return _view(row)

    def get(self, principal: Principal, conversation_id: str) -> ConversationView:
        with self.store.session() as session:
            return _view(self._owned(session, principal, conversation_id))

    def rename(self, principal: Principal, conversation_id: str, title: str) -> ConversationView:
        title = clean_title(title)
        with self.store.write() as session:
            row = self._owned(session, principal, conversation_id)
            row.title = title
            return _view(row)

    def set_endpoint(self, principal: Principal, conversation_id: str, endpoint: str) -> ConversationView:
        """Talk to another model or endpoint from the next message on."""
        endpoint = endpoint.strip()
        if not endpoint or len(endpoint) > 200 or not storable(endpoint):
            raise UserError("pick a model or endpoint to talk to", param="endpoint")
        with self.store.write() as session:
            row = self._owned(session, principal, conversation_id)
            row.endpoint = endpoint
            return _view(row)

    def delete(self, principal: Principal, conversation_id: str) -> None:
        with self.store.write() as session:
            row = self._owned(session, principal, conversation_id)
            # Messages go first: SQLite does not enforce the foreign key's ON DELETE CASCADE.
            session.execute(delete(ConversationMessage).where(ConversationMessage.conversation_id == row.id))
            session.delete(row)

    # --- messages ---------------------------------------------------------------------------------

    def messages(
        self, principal: Principal, conversation_id: str, *, limit: int = THREAD_LIMIT
    ) -> list[MessageView]:
        """The newest `limit` messages of a conversation, oldest first."""
        with self.store.session() as session:
            self._owned(session, principal, conversation_id)
            rows = session.scalars(
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation_id)
                .order_by(ConversationMessage.seq.desc())
                .limit(limit)
            ).all()
        return [_message(r) for r in reversed(rows)]

    def append(
        self,
        principal: Principal,
        conversation_id: str,
        role: str,
        content: str,
        *,
        trace_id: str | None = None,
        model: str | None = None,
        error: str | None = None,
    ) -> MessageView:
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be user or assistant, not {role!r}")
        content = storable_text(content)
        if role == "user":
            if not content.strip():
                raise UserError("write a message first", param="content")
            if len(content) > MESSAGE_MAX_CHARS:
                raise UserError(
                    f"a message has at most {MESSAGE_MAX_CHARS:,} characters; this one has {len(content):,}",
                    param="content",
                )
        content = content[:REPLY_MAX_CHARS]
        now = utcnow()
        with self.store.write() as session:
            # The row lock orders concurrent appends (PostgreSQL); SQLite's write lock already does.
            row = self._owned(session, principal, conversation_id, lock=True)
            last = session.scalar(
                select(func.max(ConversationMessage.seq)).where(ConversationMessage.conversation_id == row.id)
            )
            message = ConversationMessage(
                conversation_id=row.id,
                seq=(last or 0) + 1,
                role=role,
                content=content,
                trace_id=trace_id,
                model=model[:200] if model else None,
                error=storable_text(error) if error else None,
                created_at=now,
            )
            session.add(message)
            row.updated_at = now
            if role == "user" and last is None and row.title == NEW_TITLE:
                row.title = _auto_title(content)
        return _message(message)

    def message(self, principal: Principal, message_id: str) -> MessageView:
        """One message of one of the caller's conversations (feedback names a reply by its id)."""
        if not storable(message_id) or len(message_id) > 32:
            raise NotFound("no such message in your conversations")
        with self.store.session() as session:
            row = session.scalar(
                select(ConversationMessage)
                .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
                .where(
                    ConversationMessage.id == message_id,
                    Conversation.project_id == principal.project_id,
                    Conversation.user_id == principal.user_id,
                )
            )
        if row is None:
            raise NotFound("no such message in your conversations")
        return _message(row)

    def history(
        self, principal: Principal, conversation_id: str, *, max_messages: int, max_chars: int
    ) -> list[dict[str, str]]:
        """What the model is sent: the newest messages that fit both bounds, oldest first.

        The newest message is always sent, even alone over `max_chars`; failed replies with no text
        are left out (the model never said them).
        """
        picked: list[dict[str, str]] = []
        used = 0
        for m in reversed(self.messages(principal, conversation_id, limit=max_messages * 2)):
            if m.role == "assistant" and not m.content:
                continue
            if picked and (len(picked) >= max_messages or used + len(m.content) > max_chars):
                break
            picked.append({"role": m.role, "content": m.content})
            used += len(m.content)
        picked.reverse()
        # A model expects the conversation to start with the user, not with a cut-off answer.
        while len(picked) > 1 and picked[0]["role"] == "assistant":
            picked.pop(0)
        return picked

    def feedback(self, principal: Principal, trace_ids: list[str]) -> dict[str, ReplyFeedback]:
        """The caller's own feedback on these traces, by trace id (a reply shows what its reader said)."""
        wanted = [t for t in trace_ids if t]
        if not wanted:
            return {}
        with self.store.session() as session:
            rows = session.scalars(
                select(Score)
                .where(
                    Score.project_id == principal.project_id,
                    Score.trace_id.in_(wanted),
                    Score.author == principal.user_name,
                    Score.source == "human",
                )
                .order_by(Score.created_at, Score.id)
            ).all()
        found: dict[str, ReplyFeedback] = {}
        for score in rows:  # oldest first: the latest of each kind wins
            state = found.setdefault(score.trace_id, ReplyFeedback())
            if score.kind == "thumbs" and score.value is not None:
                state.thumbs = 1 if score.value > 0 else -1
            if score.kind in ("thumbs", "comment") and score.comment:
                state.comment = score.comment
            if score.kind == "correction":
                state.correction = _correction_text(score.corrected_output)
        return found

    # --- helpers ----------------------------------------------------------------------------------

    def _owned(
        self, session: Session, principal: Principal, conversation_id: str, *, lock: bool = False
    ) -> Conversation:
        if not storable(conversation_id) or len(conversation_id) > 32:
            raise NotFound("no such conversation")
        query = select(Conversation).where(
            Conversation.id == conversation_id,
            Conversation.project_id == principal.project_id,
            Conversation.user_id == principal.user_id,
        )
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise NotFound("no such conversation")
        return row
