"""Reading spans back: filtered, newest-first search with a keyset cursor, and one trace as a tree.

A cursor is the (start_time, span_id) of the last span of a page, base64-encoded so that callers
treat it as opaque. Paging by key, not by offset, keeps every page as cheap as the first and never
skips or repeats a span when new ones arrive between pages.

A tag filter reads `span_tags` first: its (project, tag, start_time, span_id) index yields the
tagged spans newest first, each joined to its span by key, so a rare tag among a million spans is
found without walking the others, and a common one without sorting all of its spans.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    cast,
    exists,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import aliased, defer

from fmops.errors import NotFound, UserError
from fmops.store import Store, utcnow
from fmops.store import partitions as parts
from fmops.store.models import Score, Span, SpanTag
from fmops.tracing.search_index import TRIGRAM, match_expression, pending_condition
from fmops.tracing.tags import MAX_FILTER_TAGS, parse_tags

MAX_LIMIT = 500
# Guardrail decisions are child spans of the call (fmops.guardrails.engine writes them): their kind,
# the attribute holding what the policy did, and the filter value meaning "any policy".
GUARDRAIL_KIND = "guardrail"
GUARDRAIL_OUTCOME = "fmops.guardrail.outcome"
ANY_POLICY = "*"
FEEDBACK_FILTERS = ("any", "none", "positive", "negative")
_IO_COLUMNS = (Span.input, Span.output)
NEWEST_DAYS = 2  # the free-text search's first window on PostgreSQL (`_text_walk`)
_FTS_ROWIDS = text("SELECT rowid FROM spans_fts WHERE spans_fts MATCH :match")


@dataclass(frozen=True)
class TraceFilters:
    """What a search keeps; every field left as None keeps everything."""

    start: datetime | None = None  # start_time >= start
    end: datetime | None = None  # start_time < end
    model: str | None = None
    provider: str | None = None
    status: str | None = None  # ok, error
    user: str | None = None
    session_id: str | None = None
    key_id: str | None = None
    trace_id: str | None = None
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    cache_hit: bool | None = None
    endpoint: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    variant: str | None = None
    kind: str | None = None
    root_only: bool = False  # only spans without a parent (a call, or an app's top step)
    # Feedback from people on the span's trace: any, none, positive (a thumbs up), negative (down).
    feedback: str | None = None
    # Spans whose trace has a score named `score_name` within [min_score, max_score].
    score_name: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    q: str | None = None  # case-insensitive substring of the input or output JSON
    tags: tuple[str, ...] = ()  # spans carrying every one of these tags
    # Calls a guardrail policy blocked or flagged: its label as errors name it (`no-pii`,
    # `endpoint:triage/no-pii`), or ANY_POLICY for any policy.
    blocked_by: str | None = None
    flagged_by: str | None = None

    def __post_init__(self) -> None:
        """Naive times are UTC; contradictory filters are a mistake worth naming, not an empty page."""
        if self.tags:
            object.__setattr__(self, "tags", parse_tags(self.tags, limit=MAX_FILTER_TAGS))
        elif not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", ())
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=UTC))
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UserError(
                f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})", param="start"
            )
        for low, high in (
            ("min_latency_ms", "max_latency_ms"),
            ("min_cost", "max_cost"),
            ("min_score", "max_score"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise UserError(f"{low} ({lo:g}) is greater than {high} ({hi:g})", param=low)
        if self.status is not None and self.status not in ("ok", "error"):
            raise UserError(f"status must be 'ok' or 'error', not {self.status!r}", param="status")
        if self.feedback is not None and self.feedback not in FEEDBACK_FILTERS:
            raise UserError(
                f"feedback must be one of {', '.join(FEEDBACK_FILTERS)}, not {self.feedback!r}",
                param="feedback",
            )
        if (self.min_score is not None or self.max_score is not None) and self.score_name is None:
            raise UserError(
                "min_score and max_score need score_name: which score to compare", param="score_name"
            )
        if self.prompt_version is not None and self.prompt_name is None:
            raise UserError("prompt_version needs prompt_name", param="prompt_name")
        if self.q is not None and not self.q.strip():
            raise UserError("q must not be blank", param="q")


@dataclass
class SpanNode:
    span: Span
    children: list[SpanNode] = field(default_factory=list)


@dataclass
class SpanPage:
    spans: list[Span]
    next_cursor: str | None


def encode_cursor(span: Span) -> str:
    raw = orjson.dumps([span.start_time.astimezone(UTC).isoformat(), span.span_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, span_id = orjson.loads(raw)
        start = datetime.fromisoformat(when)
        if start.tzinfo is None or not isinstance(span_id, str):
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise UserError(
            "cursor is not valid: pass the next_cursor of the previous page unchanged", param="cursor"
        ) from None
    return start, span_id


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class TraceQuery:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _text_match(self, q: str) -> ColumnElement[bool]:
        """`q` as a case-insensitive substring of the input or output JSON, through the trigram
        index where the term is long enough (migration 0012), so a term that matches nothing does
        not read every span of the project."""
        pattern = _like_pattern(q)
        if self.store.dialect == "postgresql":
            # `::text`, as the pg_trgm indexes are built, so ILIKE can use them.
            return or_(*(cast(c, Text).ilike(pattern, escape="\\") for c in _IO_COLUMNS))
        # SQLite's LIKE ignores ASCII case; JSON is stored as text, so the cast is free. The FTS5
        # trigram index finds the candidates among the spans it holds, the few newer ones are
        # scanned (fmops.tracing.search_index), and LIKE keeps the answer exactly the scan's (the
        # index folds non-ASCII case too).
        like = or_(*(cast(c, String).like(pattern, escape="\\") for c in _IO_COLUMNS))
        if len(q) < TRIGRAM:
            return like
        candidates = _FTS_ROWIDS.bindparams(match=match_expression(q)).columns(literal_column("rowid"))
        return and_(or_(literal_column("spans.rowid").in_(candidates), pending_condition()), like)

    def _conditions(self, project_id: str | None, filters: TraceFilters) -> list[ColumnElement[bool]]:
        f = filters
        where: list[ColumnElement[bool]] = []
        if project_id is not None:
            where.append(Span.project_id == project_id)
        equal: list[tuple[Any, Any]] = [
            (Span.model, f.model),
            (Span.provider, f.provider),
            (Span.status, f.status),
            (Span.user, f.user),
            (Span.session_id, f.session_id),
            (Span.key_id, f.key_id),
            (Span.trace_id, f.trace_id),
            (Span.cache_hit, f.cache_hit),
            (Span.endpoint, f.endpoint),
            (Span.prompt_name, f.prompt_name),
            (Span.prompt_version, f.prompt_version),
            (Span.variant, f.variant),
            (Span.kind, f.kind),
        ]
        where += [column == value for column, value in equal if value is not None]
        if f.start is not None:
            where.append(Span.start_time >= f.start)
        if f.end is not None:
            where.append(Span.start_time < f.end)
        if f.min_latency_ms is not None:
            where.append(Span.latency_ms >= f.min_latency_ms)
        if f.max_latency_ms is not None:
            where.append(Span.latency_ms <= f.max_latency_ms)
        if f.min_cost is not None:
            where.append(Span.cost >= f.min_cost)
        if f.max_cost is not None:
            where.append(Span.cost <= f.max_cost)
        if f.root_only:
            where.append(Span.parent_span_id.is_(None))
        if f.feedback is not None:
            where.append(_feedback_condition(f.feedback))
        if f.score_name is not None:
            score = [Score.project_id == Span.project_id, Score.trace_id == Span.trace_id]
            score.append(Score.name == f.score_name)
            if f.min_score is not None:
                score.append(Score.value >= f.min_score)
            if f.max_score is not None:
                score.append(Score.value <= f.max_score)
            where.append(exists().where(*score))
        if f.q is not None:
            where.append(self._text_match(f.q))
        for label, outcome in ((f.blocked_by, "blocked"), (f.flagged_by, "flagged")):
            if label is not None:
                where.append(_guardrail_condition(label, outcome))
        # The first tag drives the search (see `search`); every further one is a key look-up.
        for tag in f.tags[1:]:
            other = aliased(SpanTag)  # not the driving span_tags of the outer query
            where.append(
                exists().where(
                    other.project_id == Span.project_id, other.span_id == Span.span_id, other.tag == tag
                )
            )
        return where

    def search(
        self,
        project_id: str | None,
        filters: TraceFilters | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        include_io: bool = False,
    ) -> SpanPage:
        """Spans newest first (by start time, then span id); `project_id=None` searches every project."""
        filters = filters or TraceFilters()
        if not 1 <= limit <= MAX_LIMIT:
            raise UserError(f"limit must be between 1 and {MAX_LIMIT}", param="limit")
        if filters.q is not None and self.store.dialect == "postgresql":
            spans = self._text_walk(project_id, filters, limit, cursor, include_io)
        else:
            spans = self._page(project_id, filters, limit, cursor, include_io)
        next_cursor = encode_cursor(spans[-1]) if len(spans) == limit else None
        return SpanPage(spans=spans, next_cursor=next_cursor)

    def _text_walk(
        self, project_id: str | None, filters: TraceFilters, limit: int, cursor: str | None, include_io: bool
    ) -> list[Span]:
        """The free-text search on PostgreSQL, newest days first: the same query over each of the
        newest NEWEST_DAYS UTC days, and only if the page is not full then, over the rest of the range.
        Over the whole range at once, the trigram indexes of every day are read and all their
        matches sorted (0.46 s for a frequent term at 10,000,000 spans); a frequent term fills its
        page from the newest days, in tens of ms. A rare or absent term costs what the single query
        did, plus a probe of each newest day. (Windows widening day by day cost more for those:
        each query plans over the partitions; benchmarks/trace_store_pg.py.) The windows are
        disjoint and taken newest first, so the page and its cursor are exactly the single query's."""
        with self.store.session() as session:
            days = parts.day_partitions(session.connection())
        # Below the first day partition only `_before` is left: the last window is open there.
        oldest = days[0].start if days else None
        if filters.start is not None:
            oldest = filters.start if oldest is None else max(oldest, filters.start)
        top = filters.end
        if cursor is not None:
            after = decode_cursor(cursor)[0] + timedelta(microseconds=1)  # spans at the cursor's time
            top = after if top is None else min(top, after)
        newest = parts.day_start(top if top is not None else utcnow())
        lows = [newest - timedelta(days=n) for n in range(NEWEST_DAYS)]
        high = filters.end  # the first window: open above (spans stamped in the future too)
        spans: list[Span] = []
        for low in (*lows, None):
            last = low is None or oldest is None or low <= oldest
            start = filters.start if last else low
            if high is None or start is None or start < high:
                window = dataclasses.replace(filters, start=start, end=high)
                spans += self._page(project_id, window, limit - len(spans), cursor, include_io)
            if last or len(spans) == limit:
                break
            high = low
        return spans

    def _page(
        self, project_id: str | None, filters: TraceFilters, limit: int, cursor: str | None, include_io: bool
    ) -> list[Span]:
        by_text = filters.q is not None and self.store.dialect == "postgresql"
        query = self._ordered(project_id, filters, by_text=by_text)
        query = query.where(*self._conditions(project_id, filters)).limit(limit)
        if not include_io:
            query = query.options(defer(Span.input), defer(Span.output), defer(Span.attributes))
        if cursor is not None:
            after_time, after_id = decode_cursor(cursor)
            # On the driving table's columns: the same values (a tag row copies its span's start).
            time_col, id_col = (
                (SpanTag.start_time, SpanTag.span_id) if filters.tags else (Span.start_time, Span.span_id)
            )
            query = query.where(or_(time_col < after_time, and_(time_col == after_time, id_col < after_id)))
        with self.store.session() as session:
            return list(session.scalars(query))

    @staticmethod
    def _ordered(project_id: str | None, filters: TraceFilters, *, by_text: bool = False) -> Select[Span]:
        """Spans newest first; with tags, read through the first tag's rows in their index order."""
        if not filters.tags:
            newest: Any = Span.start_time
            if by_text:
                # Not the column: a LIMIT over a time index tempts PostgreSQL to walk the window
                # testing the text of every span (a second for a rare term in a day of 500k); this
                # way it takes the trigram index and sorts the matches. The same order.
                newest = Span.start_time + literal_column("interval '0 seconds'")
            return select(Span).order_by(newest.desc(), Span.span_id.desc())
        on_span = and_(SpanTag.project_id == Span.project_id, SpanTag.span_id == Span.span_id)
        query = select(Span).select_from(SpanTag).join(Span, on_span).where(SpanTag.tag == filters.tags[0])
        if project_id is not None:
            query = query.where(SpanTag.project_id == project_id)
        # The time bounds on the tag rows too, so the index range is narrowed, not just filtered.
        if filters.start is not None:
            query = query.where(SpanTag.start_time >= filters.start)
        if filters.end is not None:
            query = query.where(SpanTag.start_time < filters.end)
        return query.order_by(SpanTag.start_time.desc(), SpanTag.span_id.desc())

    def tags_of(self, project_id: str, span_ids: list[str]) -> dict[str, list[str]]:
        """Each span's tags (sorted), for the spans of one page or trace; untagged spans are absent."""
        found: dict[str, list[str]] = {}
        if not span_ids:
            return found
        query = (
            select(SpanTag.span_id, SpanTag.tag)
            .where(SpanTag.project_id == project_id, SpanTag.span_id.in_(set(span_ids)))
            .order_by(SpanTag.span_id, SpanTag.tag)
        )
        with self.store.session() as session:
            for span_id, tag in session.execute(query):
                found.setdefault(span_id, []).append(tag)
        return found

    def get_trace(self, project_id: str | None, trace_id: str) -> list[SpanNode]:
        """The trace's root spans, each with its children, siblings ordered by start time.

        A span whose parent was never recorded (or whose parents form a loop) is shown as a root
        rather than lost.
        """
        # By trace id alone, the project checked here: given both, SQLite (no ANALYZE statistics)
        # picks a (project, ...) index and walks every span of the project, seconds at 1M spans.
        query = select(Span).where(Span.trace_id == trace_id).order_by(Span.start_time, Span.span_id)
        with self.store.session() as session:
            spans = [s for s in session.scalars(query) if project_id is None or s.project_id == project_id]
        if not spans:
            raise NotFound(f"no trace with id {trace_id!r}")
        nodes = {s.span_id: SpanNode(s) for s in spans}
        roots: list[SpanNode] = []
        for span in spans:  # in start order, so every children list comes out ordered
            parent = nodes.get(span.parent_span_id) if span.parent_span_id else None
            if parent is None or parent.span is span:
                roots.append(nodes[span.span_id])
            else:
                parent.children.append(nodes[span.span_id])
        while len(reached := _reachable(roots)) < len(nodes):
            lost = next(s for s in spans if s.span_id not in reached)
            node = nodes[lost.span_id]
            nodes[lost.parent_span_id or ""].children.remove(node)
            roots.append(node)
        return roots


def _guardrail_condition(label: str, outcome: str) -> ColumnElement[bool]:
    """The span has a child guardrail span (fmops.guardrails.engine) of policy `label` (any policy
    for ANY_POLICY) whose outcome was `outcome`: a read of the trace index per candidate span."""
    child = aliased(Span)
    match = [
        child.trace_id == Span.trace_id,
        child.project_id == Span.project_id,
        child.parent_span_id == Span.span_id,
        child.kind == GUARDRAIL_KIND,
        child.attributes[GUARDRAIL_OUTCOME].as_string() == outcome,
    ]
    if label != ANY_POLICY:
        match.append(child.name == f"{GUARDRAIL_KIND} {label}")
    return exists().where(*match)


def _feedback_condition(kind: str) -> ColumnElement[bool]:
    """Scores from people (not evaluators) on the span's trace; thumbs decide positive/negative."""
    on_trace = [
        Score.project_id == Span.project_id,
        Score.trace_id == Span.trace_id,
        Score.source != "evaluator",
    ]
    if kind == "none":
        return ~exists().where(*on_trace)
    if kind == "positive":
        on_trace += [Score.kind == "thumbs", Score.value > 0]
    elif kind == "negative":
        on_trace += [Score.kind == "thumbs", Score.value < 0]
    return exists().where(*on_trace)


def _reachable(roots: list[SpanNode]) -> set[str]:
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if node.span.span_id not in seen:
            seen.add(node.span.span_id)
            pending.extend(node.children)
    return seen
