"""Recording and reading scores on traces.

Who may score what: engineers (and admins) any trace of their project; consumers only traces their
own user made (the span's user is theirs, or it was made with one of their keys), since they give
thumbs in the chat UI; annotators also the traces their project queued for review. A trace of
another project, or a consumer's view of another user's trace, answers 404: it is invisible, not
forbidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, or_, select

from fmops.auth import Principal, Role
from fmops.errors import NotFound
from fmops.feedback.schemas import FeedbackCreate
from fmops.store import Store
from fmops.store.models import AnnotationItem, ApiKey, Score, Span
from fmops.tracing import TraceWriter

# A trace answered a moment ago may still sit in the writer's queue (flushed every ~50 ms).
WRITER_WAIT_SECONDS = 1.0


class FeedbackService:
    def __init__(self, store: Store, tracer: TraceWriter | None = None) -> None:
        self.store = store
        self.tracer = tracer

    def record(self, principal: Principal, body: FeedbackCreate) -> Score:
        fields = _fields(body)
        author = self._author(principal, body)
        self._find_trace(principal, body.trace_id, body.span_id)
        score = Score(
            project_id=principal.project_id,
            trace_id=body.trace_id,
            span_id=body.span_id,
            name=body.name or body.kind,
            kind=body.kind,
            source=body.source.value,
            author=author,
            key_id=principal.key_id,
            **fields,
        )
        with self.store.session() as session:
            session.add(score)
        return score

    def list_for_trace(self, project_id: str, trace_id: str) -> list[Score]:
        """Scores of a trace, oldest first; 404 when the project has no such trace."""
        if not self._eventually(lambda: self._trace_exists(project_id, trace_id)):
            raise NotFound(f"no trace {trace_id!r} in this project")
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(Score)
                    .where(Score.project_id == project_id, Score.trace_id == trace_id)
                    .order_by(Score.created_at, Score.id)
                )
            )

    def _author(self, principal: Principal, body: FeedbackCreate) -> str:
        if body.author is None or body.author == principal.user_name:
            return principal.user_name
        # Only engineers (who run evaluators) may speak for someone, or something, else.
        principal.require(Role.engineer, "record scores under another author")
        return body.author

    def _eventually(self, look: Callable[[], bool]) -> bool:
        """Whether `look()` comes true once the spans queued in the writer now are stored."""
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while True:
            # Read before looking: with nothing queued then, what is not in the store now never will
            # be. (Read after, a span written between the two reads would be missed.)
            settled = self.tracer is None or self.tracer.pending == 0 or time.monotonic() > deadline
            if look():
                return True
            if settled:
                return False
            time.sleep(0.02)

    def _find_trace(self, principal: Principal, trace_id: str, span_id: str | None) -> None:
        if not self._eventually(lambda: self._trace_visible(principal, trace_id, span_id)):
            what = f"span {span_id!r} of trace {trace_id!r}" if span_id else f"trace {trace_id!r}"
            mine = " made by your user" if not principal.role.covers(Role.engineer) else ""
            raise NotFound(f"no {what}{mine} in this project", param="trace_id")

    def _trace_exists(self, project_id: str, trace_id: str) -> bool:
        with self.store.session() as session:
            return bool(
                session.scalar(
                    select(
                        exists().where(_unindexed(Span.project_id) == project_id, Span.trace_id == trace_id)
                    )
                )
            )

    def _trace_visible(self, principal: Principal, trace_id: str, span_id: str | None) -> bool:
        where: list[Any] = [_unindexed(Span.project_id) == principal.project_id, Span.trace_id == trace_id]
        if span_id is not None:
            where.append(Span.span_id == span_id)
        if not principal.role.covers(Role.engineer):
            own_keys = select(ApiKey.id).where(ApiKey.user_id == principal.user_id)
            visible = [Span.user == principal.user_name, Span.key_id.in_(own_keys)]
            if principal.role.covers(Role.annotator):  # and the traces their project queued for review
                queued = select(AnnotationItem.trace_id).where(
                    AnnotationItem.project_id == principal.project_id
                )
                visible.append(Span.trace_id.in_(queued))
            where.append(or_(*visible))
        with self.store.session() as session:
            return bool(session.scalar(select(exists().where(*where))))


def _unindexed(column: Any) -> Any:
    """The column's value, but no index on it: the trace id's index finds the trace's spans (given
    both, SQLite without ANALYZE statistics walks a (project, ...) index, every span of the project)."""
    return column.concat("")


def _fields(body: FeedbackCreate) -> dict[str, Any]:
    """The stored fields of a score: what each kind needs is already checked by its schema."""
    value = body.value
    if isinstance(value, bool):  # thumbs up/down given as true/false
        value = 1.0 if value else -1.0
    return {
        "value": None if value is None else float(value),
        "label": body.label,
        "comment": body.comment,
        "corrected_output": body.corrected_output,
    }
