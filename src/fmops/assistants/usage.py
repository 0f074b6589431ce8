"""How an assistant is used, read from its endpoint's traces over a window: conversations, answers
and people; the thumbs given on the answers; the evaluators' scores of them.

An assistant's answers are the root spans of its endpoint whose session is one of the conversations
talking to it (the chat sends the conversation as the trace's session), so these figures are the
endpoint's own traffic, seen through the assistant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from fmops.errors import UserError
from fmops.store import Store, utcnow
from fmops.store.models import AssistantConversation, Score, Span

WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_WINDOW = "7d"


def window(name: str) -> timedelta:
    """One of WINDOWS by name; a 400 naming the others."""
    try:
        return WINDOWS[name]
    except KeyError:
        raise UserError(
            f"window must be one of {', '.join(WINDOWS)}, not {name[:20]!r}", param="window"
        ) from None


@dataclass(frozen=True, slots=True)
class ScoreMean:
    name: str
    mean: float
    n: int


@dataclass(frozen=True, slots=True)
class AssistantUsage:
    assistant: str
    endpoint: str
    since: datetime
    until: datetime
    conversations: int
    answers: int
    users: int
    errors: int
    thumbs_up: int  # answers whose raters' latest thumbs were up (one per rater and answer)
    thumbs_down: int
    scores: tuple[ScoreMean, ...]  # evaluators' numeric scores of the answers, by name

    @property
    def rated_share(self) -> float | None:
        """The share of answers given a thumb (up or down)."""
        return (self.thumbs_up + self.thumbs_down) / self.answers if self.answers else None

    @property
    def up_share(self) -> float | None:
        """Of the thumbs given, the share up."""
        rated = self.thumbs_up + self.thumbs_down
        return self.thumbs_up / rated if rated else None

    def public(self) -> dict[str, object]:
        return {
            "assistant": self.assistant,
            "endpoint": self.endpoint,
            "since": self.since,
            "until": self.until,
            "conversations": self.conversations,
            "answers": self.answers,
            "users": self.users,
            "errors": self.errors,
            "thumbs_up": self.thumbs_up,
            "thumbs_down": self.thumbs_down,
            "rated_share": self.rated_share,
            "up_share": self.up_share,
            "scores": [{"name": s.name, "mean": s.mean, "n": s.n} for s in self.scores],
        }


def _answers(
    project_id: str, assistant: str, endpoint: str, since: datetime, until: datetime
) -> list[ColumnElement[bool]]:
    conversations = select(AssistantConversation.conversation_id).where(
        AssistantConversation.project_id == project_id, AssistantConversation.assistant == assistant
    )
    return [
        Span.project_id == project_id,
        Span.endpoint == endpoint,
        Span.parent_span_id.is_(None),
        Span.start_time >= since,
        Span.start_time < until,
        Span.session_id.in_(conversations),
    ]


def usage(
    store: Store,
    project_id: str,
    assistant: str,
    endpoint: str,
    *,
    span: timedelta = WINDOWS[DEFAULT_WINDOW],
    until: datetime | None = None,
) -> AssistantUsage:
    """The assistant's figures over the `span` before `until` (now)."""
    until = until or utcnow()
    since = until - span
    answers = _answers(project_id, assistant, endpoint, since, until)
    traces = select(Span.trace_id).where(*answers)
    with store.session() as session:
        counts = session.execute(
            select(
                func.count(),
                func.count(func.distinct(Span.session_id)),
                func.count(func.distinct(Span.user)),
                func.count().filter(Span.status == "error"),
            ).where(*answers)
        ).one()
        thumbs = session.execute(
            select(Score.trace_id, Score.author, Score.value)
            .where(
                Score.project_id == project_id,
                Score.kind == "thumbs",
                Score.trace_id.in_(traces),
            )
            .order_by(Score.created_at, Score.id)
        ).all()
        scores = session.execute(
            select(Score.name, func.avg(Score.value), func.count())
            .where(
                Score.project_id == project_id,
                Score.source == "evaluator",
                Score.value.is_not(None),
                Score.trace_id.in_(traces),
            )
            .group_by(Score.name)
            .order_by(Score.name)
        ).all()
    latest: dict[tuple[str, str | None], float] = {}
    for trace_id, author, value in thumbs:  # in order: a rater's later thumb replaces their earlier one
        if value is not None:
            latest[(trace_id, author)] = value
    return AssistantUsage(
        assistant=assistant,
        endpoint=endpoint,
        since=since,
        until=until,
        answers=int(counts[0]),
        conversations=int(counts[1]),
        users=int(counts[2]),
        errors=int(counts[3]),
        thumbs_up=sum(1 for v in latest.values() if v > 0),
        thumbs_down=sum(1 for v in latest.values() if v < 0),
        scores=tuple(ScoreMean(name, float(mean), int(n)) for name, mean, n in scores),
    )
