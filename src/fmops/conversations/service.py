"""Chat conversations: list, create, rename, delete, read, search, export, and append their messages.

Messages form a tree: each names the message it follows (`parent_id`). A regenerated answer is a
sibling of the answer it replaces, an edited question a sibling of the question; all are kept. The
conversation's `leaf_id` ends the branch shown: what the page lists, what the model is sent, and
where the next message goes. Switching to another sibling shows its newest branch.

Every call is scoped to the caller's project AND user: another user's conversation answers 404,
whatever the caller's role, as if it did not exist (a chat is private to the person who had it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from fmops.auth import Principal
from fmops.auth.service import storable
from fmops.errors import NotFound, UserError
from fmops.store import Store, new_id, utcnow
from fmops.store.models import Conversation, ConversationMessage, Score

NEW_TITLE = "New conversation"
TITLE_MAX = 200
AUTO_TITLE_CHARS = 60  # a new conversation is named after the start of its first message
MESSAGE_MAX_CHARS = 20_000  # what a person may send in one message
REPLY_MAX_CHARS = 200_000  # what is kept of one model answer
PAGE_SIZE = 30
THREAD_LIMIT = 500  # messages shown of one conversation (the newest)
SEARCH_LIMIT = 50  # conversations a search lists
SEARCH_MAX_CHARS = 200
SNIPPET_CHARS = 120
PARAMS = ("temperature", "max_tokens")  # what a conversation remembers for its next answers
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ConversationView:
    id: str
    title: str
    endpoint: str
    created_at: datetime
    updated_at: datetime
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens (unset: the model's)


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
    parent_id: str | None = None
    endpoint: str | None = None  # what was asked to answer (assistant messages)
    prompt_name: str | None = None  # the endpoint's prompt, when an endpoint answered
    prompt_version: int | None = None
    # Its place among its siblings (the versions of this turn), 1-based, and its neighbours there.
    version: int = 1
    versions: int = 1
    previous_id: str | None = None
    next_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[ConversationView]
    next_offset: int | None  # None: this was the last page


@dataclass(frozen=True, slots=True)
class Found:
    """A conversation a search matched, with where: a piece of a message's text, or none (the title)."""

    conversation: ConversationView
    snippet: str | None


@dataclass(slots=True)
class ReplyFeedback:
    """What the signed-in person said about one reply (their latest of each kind)."""

    thumbs: int | None = None  # 1 up, -1 down
    comment: str | None = None
    correction: str | None = None


def _view(row: Conversation) -> ConversationView:
    return ConversationView(
        row.id, row.title, row.endpoint, row.created_at, row.updated_at, dict(row.params or {})
    )


def _message(row: ConversationMessage, siblings: list[str] | None = None) -> MessageView:
    """`siblings`: the ids of its parent's children, oldest first (None: it has none but itself)."""
    siblings = siblings or [row.id]
    at = siblings.index(row.id)
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
        row.parent_id,
        row.endpoint,
        row.prompt_name,
        row.prompt_version,
        at + 1,
        len(siblings),
        siblings[at - 1] if at > 0 else None,
        siblings[at + 1] if at + 1 < len(siblings) else None,
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


class _Leaf:
    """The default parent of a new message: the shown branch's last (None means no parent)."""


LEAF = _Leaf()


def _rows(session: Session, conversation_id: str) -> list[ConversationMessage]:
    return list(
        session.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation_id)
            .order_by(ConversationMessage.seq)
        )
    )


class _Tree:
    """One conversation's messages as the tree they form (read once, walked in memory)."""

    def __init__(self, rows: list[ConversationMessage]) -> None:
        self.rows = {r.id: r for r in rows}  # in the order written
        self.children: dict[str | None, list[str]] = {}
        for r in rows:
            parent = r.parent_id if r.parent_id in self.rows else None
            self.children.setdefault(parent, []).append(r.id)

    def newest_leaf(self, message_id: str) -> str:
        """The end of the newest branch through this message."""
        while self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def branch(self, leaf_id: str | None) -> list[ConversationMessage]:
        """From the first message to `leaf_id` (an unknown leaf: the newest branch)."""
        if leaf_id not in self.rows:
            if not self.rows:
                return []
            leaf_id = self.newest_leaf(self.children[None][-1])
        path: list[ConversationMessage] = []
        at: str | None = leaf_id
        while at is not None and at in self.rows and len(path) <= len(self.rows):
            path.append(self.rows[at])
            at = self.rows[at].parent_id
        path.reverse()
        return path

    def view(self, row: ConversationMessage) -> MessageView:
        parent = row.parent_id if row.parent_id in self.rows else None
        return _message(row, self.children.get(parent))


def _snippet(content: str, query: str) -> str:
    """The piece of `content` around the first match of `query`, on one line."""
    at = content.lower().find(query.lower())
    start = max(at - SNIPPET_CHARS // 3, 0) if at >= 0 else 0
    piece = _SPACES.sub(" ", content[start : start + SNIPPET_CHARS]).strip()
    return ("…" if start > 0 else "") + piece + ("…" if start + SNIPPET_CHARS < len(content) else "")


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
        """The shown branch's newest `limit` messages, oldest first, each with its versions."""
        with self.store.session() as session:
            row = self._owned(session, principal, conversation_id)
            tree = _Tree(_rows(session, row.id))
        return [tree.view(m) for m in tree.branch(row.leaf_id)[-limit:]]

    def append(
        self,
        principal: Principal,
        conversation_id: str,
        role: str,
        content: str,
        *,
        parent_id: str | _Leaf | None = LEAF,
        trace_id: str | None = None,
        model: str | None = None,
        error: str | None = None,
        endpoint: str | None = None,
        prompt_name: str | None = None,
        prompt_version: int | None = None,
    ) -> MessageView:
        """Add a message after `parent_id` (by default the shown branch's last); it ends the branch shown.

        A parent that already has children makes this one their new sibling (a regenerated answer,
        an edited question)."""
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
            if isinstance(parent_id, _Leaf):
                parent_id = row.leaf_id if last is not None else None
            elif parent_id is not None and not session.scalar(
                select(ConversationMessage.id).where(
                    ConversationMessage.id == parent_id, ConversationMessage.conversation_id == row.id
                )
            ):
                raise NotFound("that message is no longer in this conversation")
            message = ConversationMessage(
                id=new_id(),
                conversation_id=row.id,
                seq=(last or 0) + 1,
                parent_id=parent_id,
                role=role,
                content=content,
                trace_id=trace_id,
                model=model[:200] if model else None,
                error=storable_text(error) if error else None,
                endpoint=endpoint[:200] if endpoint else None,
                prompt_name=prompt_name[:200] if prompt_name else None,
                prompt_version=prompt_version,
                created_at=now,
            )
            session.add(message)
            row.leaf_id = message.id
            row.updated_at = now
            if role == "user" and last is None and row.title == NEW_TITLE:
                row.title = _auto_title(content)
            session.flush()
            siblings = list(
                session.scalars(
                    select(ConversationMessage.id)
                    .where(
                        ConversationMessage.conversation_id == row.id,
                        ConversationMessage.parent_id == parent_id
                        if parent_id is not None
                        else ConversationMessage.parent_id.is_(None),
                    )
                    .order_by(ConversationMessage.seq)
                )
            )
            return _message(message, siblings)

    def question(self, principal: Principal, conversation_id: str, answer_id: str) -> MessageView:
        """The question an answer replied to: what a regenerated answer replies to again."""
        with self.store.session() as session:
            row = self._owned(session, principal, conversation_id)
            tree = _Tree(_rows(session, row.id))
        answer = tree.rows.get(answer_id)
        if answer is None:
            raise NotFound("that answer is no longer in this conversation")
        if answer.role != "assistant" or answer.parent_id not in tree.rows:
            raise UserError("only an answer can be regenerated: pick one of the model's messages")
        return tree.view(tree.rows[answer.parent_id])

    def edit(self, principal: Principal, conversation_id: str, message_id: str, content: str) -> MessageView:
        """A new version of one of the person's messages: a sibling of it, shown from now on."""
        with self.store.session() as session:
            row = self._owned(session, principal, conversation_id)
            original = session.scalar(
                select(ConversationMessage).where(
                    ConversationMessage.id == message_id, ConversationMessage.conversation_id == row.id
                )
            )
        if original is None:
            raise NotFound("that message is no longer in this conversation")
        if original.role != "user":
            raise UserError("only your own messages can be edited; regenerate an answer instead")
        return self.append(principal, conversation_id, "user", content, parent_id=original.parent_id)

    def show(self, principal: Principal, conversation_id: str, message_id: str) -> ConversationView:
        """Show the branch through this message (its newest continuation): what the next message follows."""
        with self.store.write() as session:
            row = self._owned(session, principal, conversation_id, lock=True)
            tree = _Tree(_rows(session, row.id))
            if message_id not in tree.rows:
                raise NotFound("that message is no longer in this conversation")
            row.leaf_id = tree.newest_leaf(message_id)
            return _view(row)

    def set_params(
        self, principal: Principal, conversation_id: str, params: dict[str, Any]
    ) -> ConversationView:
        """Remember the answers' parameters for this conversation (None forgets one: the model's default)."""
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise UserError(f"unknown parameter {sorted(unknown)[0]!r}: use one of {', '.join(PARAMS)}")
        temperature, max_tokens = params.get("temperature"), params.get("max_tokens")
        if temperature is not None and not (
            isinstance(temperature, int | float)
            and not isinstance(temperature, bool)
            and 0 <= temperature <= 2
        ):
            raise UserError("temperature is a number from 0 to 2", param="temperature")
        if max_tokens is not None and not (
            isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 1 <= max_tokens <= 8192
        ):
            raise UserError("max_tokens is a whole number from 1 to 8192", param="max_tokens")
        with self.store.write() as session:
            row = self._owned(session, principal, conversation_id)
            merged = {**(row.params or {}), **params}
            row.params = {k: v for k, v in merged.items() if v is not None} or None
            return _view(row)

    def search(self, principal: Principal, query: str, *, limit: int = SEARCH_LIMIT) -> list[Found]:
        """The caller's conversations whose title or any message (any branch) holds `query`, newest first."""
        query = _SPACES.sub(" ", storable_text(query)).strip()
        if not query:
            raise UserError("type something to search for", param="q")
        if len(query) > SEARCH_MAX_CHARS:
            raise UserError(f"a search has at most {SEARCH_MAX_CHARS} characters", param="q")
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", query) + "%"
        texts = select(ConversationMessage.conversation_id).where(
            ConversationMessage.content.ilike(pattern, escape="\\")
        )
        with self.store.session() as session:
            rows = session.scalars(
                select(Conversation)
                .where(
                    Conversation.project_id == principal.project_id,
                    Conversation.user_id == principal.user_id,
                    or_(Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(texts)),
                )
                .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
                .limit(max(1, min(limit, 200)))
            ).all()
            snippets: dict[str, str] = {}
            if rows:
                for conversation_id, content in session.execute(
                    select(ConversationMessage.conversation_id, ConversationMessage.content)
                    .where(
                        ConversationMessage.conversation_id.in_([r.id for r in rows]),
                        ConversationMessage.content.ilike(pattern, escape="\\"),
                    )
                    .order_by(ConversationMessage.seq)
                ):
                    snippets.setdefault(conversation_id, _snippet(content, query))
        return [Found(_view(r), snippets.get(r.id)) for r in rows]

    def export(
        self, principal: Principal, conversation_id: str
    ) -> tuple[ConversationView, list[MessageView], list[str]]:
        """The conversation, its messages (every branch, in the order written), the shown branch's ids."""
        with self.store.session() as session:
            row = self._owned(session, principal, conversation_id)
            tree = _Tree(_rows(session, row.id))
        shown = [m.id for m in tree.branch(row.leaf_id)]
        return _view(row), [tree.view(m) for m in tree.rows.values()], shown

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
        self,
        principal: Principal,
        conversation_id: str,
        *,
        max_messages: int,
        max_chars: int,
        until: str | None = None,
    ) -> list[dict[str, str]]:
        """What the model is sent: the shown branch's newest messages that fit both bounds, oldest first.

        `until` ends the branch at that message instead (a regenerated answer sees what came before
        its question). The newest message is always sent, even alone over `max_chars`; failed replies
        with no text are left out (the model never said them).
        """
        with self.store.session() as session:
            row = self._owned(session, principal, conversation_id)
            tree = _Tree(_rows(session, row.id))
        if until is not None and until not in tree.rows:
            raise NotFound("that message is no longer in this conversation")
        picked: list[dict[str, str]] = []
        used = 0
        for m in reversed(tree.branch(until or row.leaf_id)):
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
