"""Hourly roll-ups of the spans: written in the background, read by dashboards over long ranges.

Every batch the trace writer stores marks the hours its spans started in as dirty
(`mark_dirty`, one upsert into `stats_rollup_hours` in the batch's own transaction). Every
`stats_rollup_interval_seconds`, `RollupLoop` recomputes each dirty hour that ended more than a
minute ago from its spans: one transaction per hour clears the mark, deletes the hour's rows and
inserts fresh ones. Recomputing is idempotent, so replicas may run the loop side by side: on
PostgreSQL the first statement (clear the mark where it is set) takes the hour's row lock, and a
second replica waiting on it finds the mark already cleared and skips the hour. A batch stored
while an hour is being rolled up marks it again (its upsert comes after its spans, in the same
transaction): on PostgreSQL it waits for the roll-up's lock and sets the mark after it, on SQLite
the two transactions take turns. Either way the hour is rolled again next round.

Hours that were never marked (spans stored before roll-ups existed, or loaded by hand without
`mark_dirty`) are found by the loop too: each round `backfill` walks back one window of hours from
the newest and rolls up a few it finds, so an upgraded database fills in by itself.

The same pass writes `stats_rollup_facets`: the hour's sums one dimension at a time (the whole
project, each model, each user; migration 0023), which long series and breakdowns by model or user
read instead of every (model, provider, endpoint, prompt, variant) row (fmops.stats.rollup_read).
The `user` rows of a UTC day whose 24 hours are all rolled up and clean are also kept summed per
day (facet `user_day`, `_write_user_day`), which a breakdown by user reads for its whole days.

A row also sums the scores of its requests' traces (feedback, thumbs, and a sum and count per
score name), as the exact pass does. Scores arrive after their span: every score inserted through
the ORM marks the hour of its trace's root span dirty (fmops.store.models.rollups), so the hour is
read from spans and scores until the next round rolls it again. (Reading scores for a long range by
joining each to its root span instead cost 0.7 s for 30 days at 1,000,000 spans: one random row
read per scored trace.)

Latency and TTFT are kept as log-scale histograms: bucket `floor(ln(v) / ln(1.02))`, read back as
the bucket's geometric middle, so any value (and so any quantile) comes back within 1% of the
true one (sqrt(1.02) - 1 = 0.995%). Zero (and anything not positive) has a bucket of its own.
A histogram is stored as two lists, `[[bucket, ...], [count, ...]]`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Text,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session

from fmops.periodic import Periodic
from fmops.stats.aggregate import SCORE_CLOCK_MARGIN
from fmops.stats.buckets import bucket_expression
from fmops.stats.metrics import FEEDBACK_SOURCES
from fmops.store import Store, upsert, utcnow
from fmops.store.models import Project, Score, Span, StatsRollup, StatsRollupFacet, StatsRollupHour
from fmops.store.models.rollups import mark_hours

log = logging.getLogger(__name__)

HOUR_SECONDS = 3600
_EPOCH = datetime.fromtimestamp(0, UTC)
GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -1_000_000  # below any real bucket: ln(1e-300) / ln(1.02) is about -34,900
SCORE_CHUNK = 500  # trace ids per query for their scores
MANY_HISTOGRAMS = 64  # from this many on, `Histogram.merge_all` sums them with numpy
SETTLE = timedelta(minutes=1)  # an hour is rolled up once it ended this long ago
# The span columns a roll-up row is keyed by: every dimension but key and user.
DIMENSIONS = ("model", "provider", "endpoint", "prompt_name", "prompt_version", "variant")
DimensionKey = tuple[Any, ...]


def hour_of(moment: datetime) -> int:
    """The hour's number since the epoch, the way fmops.stats.buckets numbers an hour bucket."""
    return int(moment.timestamp()) // HOUR_SECONDS


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_SECONDS, UTC)


def bucket_of(value: float) -> int:
    return math.floor(math.log(value) / _LOG_GAMMA) if value > 0 else ZERO_BUCKET


def bucket_value(bucket: int) -> float:
    return 0.0 if bucket == ZERO_BUCKET else GAMMA ** (bucket + 0.5)


class Histogram:
    """Counts per log-scale bucket; quantiles interpolated like percentile_cont, within 1%."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, value: float) -> None:
        bucket = bucket_of(value)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def merge_stored(self, stored: Any) -> None:
        """Add a stored histogram (`[[bucket, ...], [count, ...]]`)."""
        counts = self.counts
        if not counts:
            counts.update(zip(stored[0], stored[1], strict=True))
            return
        get = counts.get
        for bucket, count in zip(stored[0], stored[1], strict=True):
            counts[bucket] = get(bucket, 0) + count

    def merge_all(self, stored: Sequence[Any]) -> None:
        """Add many stored histograms at once (a roll-up read's): summed by numpy when they are many."""
        if len(stored) < MANY_HISTOGRAMS:
            mine = self.counts
            get = mine.get
            for buckets, numbers in stored:  # merge_stored inlined: a week by user calls this 2,000 times
                for bucket, number in zip(buckets, numbers, strict=True):
                    mine[bucket] = get(bucket, 0) + number
            return
        import numpy as np  # here, not at import: only long dashboard reads need it

        buckets = np.fromiter(chain.from_iterable(one[0] for one in stored), dtype=np.int64)
        counts = np.fromiter(chain.from_iterable(one[1] for one in stored), dtype=np.int64)
        found, where = np.unique(buckets, return_inverse=True)
        sums = np.bincount(where, weights=counts, minlength=len(found))
        get = self.counts.get
        for bucket, count in zip(found.tolist(), sums.tolist(), strict=True):
            self.counts[bucket] = get(bucket, 0) + round(count)

    def merge(self, other: Histogram) -> None:
        counts, get = self.counts, self.counts.get
        for bucket, count in other.counts.items():
            counts[bucket] = get(bucket, 0) + count

    def stored(self) -> list[list[int]]:
        buckets = sorted(self.counts)
        return [buckets, [self.counts[b] for b in buckets]]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantiles(self, quantiles: Sequence[float]) -> list[float | None]:
        total = self.total
        if total == 0:
            return [None] * len(quantiles)
        ordered = sorted(self.counts.items())
        return [self._quantile(ordered, total, q) for q in quantiles]

    @staticmethod
    def _quantile(ordered: list[tuple[int, int]], total: int, q: float) -> float:
        position = q * (total - 1)
        low = math.floor(position)
        high = min(low + 1, total - 1)
        low_value, high_value = _value_at(ordered, low), _value_at(ordered, high)
        return low_value + (high_value - low_value) * (position - low)


def _value_at(ordered: list[tuple[int, int]], rank: int) -> float:
    """The value of the `rank`-th smallest (from 0) of the counted values."""
    seen = 0
    for bucket, count in ordered:
        seen += count
        if rank < seen:
            return bucket_value(bucket)
    return bucket_value(ordered[-1][0])


@dataclass
class Cell:
    """What sums over one group of spans: a roll-up row, or a group of a dashboard query."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    feedback: int = 0  # requests whose trace got feedback from a person or an application
    thumbs: int = 0
    thumbs_up: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]

    def add_scores(self, feedback: int, thumbs: int, thumbs_up: int, scores: dict[str, list[float]]) -> None:
        self.feedback += feedback
        self.thumbs += thumbs
        self.thumbs_up += thumbs_up
        for name, (total, count) in scores.items():
            mine = self.scores.get(name)
            if mine is None:
                self.scores[name] = [total, count]
            else:
                mine[0] += total
                mine[1] += count

    def add_span(self, root: bool, status: str, tokens_in: Any, tokens_out: Any, cost: Any) -> None:
        self.input_tokens += tokens_in or 0
        self.output_tokens += tokens_out or 0
        self.cost += cost or 0.0
        if root:
            self.requests += 1
            if status == "error":
                self.errors += 1

    def merge(self, other: Cell) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.latency.merge(other.latency)
        self.ttft.merge(other.ttft)
        self.add_scores(other.feedback, other.thumbs, other.thumbs_up, other.scores)


# The columns `cells_of` reads, after the caller's own leading ones.
SPAN_COLUMNS = (
    Span.parent_span_id.is_(None),
    Span.status,
    Span.input_tokens,
    Span.output_tokens,
    Span.cost,
    Span.latency_ms,
    Span.ttft_ms,
)


def add_span_row(cell: Cell, row: Sequence[Any]) -> None:
    """Add one span read with SPAN_COLUMNS (the last seven values of `row`)."""
    root, status, tokens_in, tokens_out, cost, latency, ttft = row[-7:]
    cell.add_span(bool(root), status, tokens_in, tokens_out, cost)
    if root:
        if latency is not None:
            cell.latency.add(latency)
        if ttft is not None:
            cell.ttft.add(ttft)


# --- marking -------------------------------------------------------------------------------------


def mark_dirty(session: Session, spans: Sequence[dict[str, Any]]) -> None:
    """The trace writer's hook: mark the hours these spans started in (one statement a batch)."""
    hours: set[tuple[Any, int]] = set()
    # Most batches hold one hour of one project: a span inside the last hour found costs two
    # comparisons, not a timestamp and a set lookup (a third of the marking's time otherwise).
    project: Any = None
    low = high = _EPOCH
    for span in spans:
        start = span.get("start_time")
        if not isinstance(start, datetime):
            continue
        if low <= start < high and span.get("project_id") == project:
            continue
        project = span.get("project_id")
        hour = int(start.timestamp()) // HOUR_SECONDS
        hours.add((project, hour))
        low = hour_start(hour)
        high = low + timedelta(hours=1)
    if not hours:
        return
    statement = mark_hours(session.get_bind().dialect.name)
    # Sorted: two replicas marking the same hours lock them in the same order (no deadlock).
    rows = [{"project_id": p, "hour": h, "dirty": True, "rolled_at": None} for p, h in sorted(hours)]
    # On the Core connection: through the ORM's bulk insert it took ~4x the CPU (0.09 vs 0.024 ms).
    session.connection().execute(statement, rows)


# --- rolling up ----------------------------------------------------------------------------------


FacetKey = tuple[str, Any]  # (facet, value): ("all", None), ("model", "gpt-4o"), ("user", "alice")
FACETS = ("all", "model", "user")  # the one-dimension roll-ups (fmops.store.models.rollups)
USER_DAY = "user_day"  # the `user` rows of a whole UTC day summed, at its first hour (`_write_user_day`)
DAY_HOURS = 24


def compute_hour(
    session: Session, project_id: str, hour: int
) -> tuple[dict[DimensionKey, Cell], dict[FacetKey, Cell]]:
    """The hour's cells by DIMENSIONS and by facet, from its spans and the scores of its requests'
    traces (one pass over the spans for all)."""
    start = hour_start(hour)
    dims = [getattr(Span, name) for name in DIMENSIONS]
    query = select(Span.trace_id, *dims, Span.user, *SPAN_COLUMNS).where(
        Span.project_id == project_id,
        Span.start_time >= start,
        Span.start_time < start + timedelta(hours=1),
    )
    cells: dict[DimensionKey, Cell] = {}
    facets: dict[FacetKey, Cell] = {}
    roots: dict[str, list[Cell]] = {}  # trace id -> the cells of its root spans (one, normally)
    width, model = len(DIMENSIONS), 1 + DIMENSIONS.index("model")
    for row in session.execute(query):
        key = tuple(row[1 : 1 + width])
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        mine = [cell]
        for facet in (("all", None), ("model", row[model]), ("user", row[1 + width])):
            other = facets.get(facet)
            if other is None:
                other = facets[facet] = Cell()
            mine.append(other)
        for one in mine:
            add_span_row(one, row)
        if row[-7]:  # a root span: a request, which carries its trace's scores
            roots.setdefault(row[0], []).extend(mine)
    add_trace_scores(session, project_id, start, roots)
    return cells, facets


def _sums(cell: Cell) -> dict[str, Any]:
    """A cell as the columns of a roll-up row (either table)."""
    return {
        "requests": cell.requests,
        "errors": cell.errors,
        "input_tokens": cell.input_tokens,
        "output_tokens": cell.output_tokens,
        "cost": cell.cost,
        "latency_count": cell.latency.total,
        "latency_hist": cell.latency.stored(),
        "ttft_count": cell.ttft.total,
        "ttft_hist": cell.ttft.stored(),
        "feedback": cell.feedback,
        "thumbs": cell.thumbs,
        "thumbs_up": cell.thumbs_up,
        "scores": cell.scores,
    }


def add_trace_scores(
    session: Session, project_id: str, start: datetime, roots: dict[str, list[Cell]]
) -> None:
    """Each trace's scores created since a day before `start`, summed as the exact pass does
    (fmops.stats.aggregate), into its root spans' cells."""
    traces = list(roots)
    for first in range(0, len(traces), SCORE_CHUNK):
        chunk = traces[first : first + SCORE_CHUNK]
        query = select(Score.trace_id, Score.source, Score.kind, Score.name, Score.value).where(
            Score.project_id == project_id,
            Score.trace_id.in_(chunk),
            Score.created_at >= start - SCORE_CLOCK_MARGIN,
        )
        per_trace: dict[str, list[Any]] = {}
        for trace_id, source, kind, name, value in session.execute(query):
            found = per_trace.get(trace_id)
            if found is None:
                found = per_trace[trace_id] = [0, 0, 0, {}]
            if source in FEEDBACK_SOURCES:
                found[0] = 1
            if kind == "thumbs":
                found[1] += 1
                if value is not None and value > 0:
                    found[2] += 1
            elif value is not None:
                total = found[3].setdefault(name, [0.0, 0])
                total[0] += value
                total[1] += 1
        for trace_id, (feedback, thumbs, thumbs_up, scores) in per_trace.items():
            for cell in roots[trace_id]:
                cell.add_scores(feedback, thumbs, thumbs_up, scores)


def _write_hour(session: Session, project_id: str, hour: int) -> int:
    day = hour // DAY_HOURS
    if session.get_bind().dialect.name == "postgresql":
        # One roll-up at a time per (project, day), taken before any row of it is touched: the
        # day's `user_day` rows must see every other hour's roll-up committed (see `_write_user_day`).
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(project_id), day)))
    session.execute(delete(StatsRollup).where(StatsRollup.project_id == project_id, StatsRollup.hour == hour))
    session.execute(
        delete(StatsRollupFacet).where(
            StatsRollupFacet.project_id == project_id,
            StatsRollupFacet.hour == hour,
            StatsRollupFacet.facet != USER_DAY,
        )
    )
    cells, facets = compute_hour(session, project_id, hour)
    rows = [
        {"project_id": project_id, "hour": hour, **dict(zip(DIMENSIONS, key, strict=True)), **_sums(cell)}
        for key, cell in cells.items()
    ]
    if rows:
        session.execute(insert(StatsRollup), rows)
    faceted = [
        {"project_id": project_id, "hour": hour, "facet": facet, "value": value, **_sums(cell)}
        for (facet, value), cell in facets.items()
    ]
    if faceted:
        session.execute(insert(StatsRollupFacet), faceted)
    _write_user_day(session, project_id, day)
    return len(rows)


def _write_user_day(session: Session, project_id: str, day: int) -> None:
    """The day's `user_day` rows: its 24 hours' `user` rows summed, written only while all 24 are
    rolled up and clean (else none are kept), so a week by user reads 7,000 rows where it read
    168,000 (benchmarks/trace_store_pg.py). Every roll-up of an hour of the day rewrites them, in its
    own transaction; on PostgreSQL the caller holds the day's lock, so no two of them overlap (two
    replicas rolling two hours of a day at once would each miss the other's hour)."""
    first = day * DAY_HOURS
    last = first + DAY_HOURS - 1
    session.execute(
        delete(StatsRollupFacet).where(
            StatsRollupFacet.project_id == project_id,
            StatsRollupFacet.facet == USER_DAY,
            StatsRollupFacet.hour == first,
        )
    )
    clean = session.scalar(
        select(func.count()).where(
            StatsRollupHour.project_id == project_id,
            StatsRollupHour.hour >= first,
            StatsRollupHour.hour <= last,
            StatsRollupHour.dirty.is_(False),
        )
    )
    if clean != DAY_HOURS:
        return
    cells: dict[tuple[Any, ...], Cell] = {}
    where = [
        StatsRollupFacet.project_id == project_id,
        StatsRollupFacet.facet == "user",
        StatsRollupFacet.hour >= first,
        StatsRollupFacet.hour <= last,
    ]
    add_summed(session, StatsRollupFacet, where, [StatsRollupFacet.value], cells)
    rows = [
        {"project_id": project_id, "hour": first, "facet": USER_DAY, "value": value, **_sums(cell)}
        for (value,), cell in cells.items()
    ]
    if rows:
        session.execute(insert(StatsRollupFacet), rows)


def add_summed(
    session: Session,
    table: Any,
    where: Sequence[ColumnElement[bool]],
    group: Sequence[Any],
    cells: dict[tuple[Any, ...], Cell],
) -> None:
    """Add the roll-up rows of `table` (either) that match `where` to `cells`, by `group`.

    Summed and concatenated by the database, one row per group: at 10,000,000 spans a week is
    12,000 roll-up rows, and reading them one by one took 0.4 s (benchmarks/trace_store_pg.py).
    The histograms and score maps come back as text, decoded and merged here."""
    dialect = session.get_bind().dialect.name
    agg = func.string_agg if dialect == "postgresql" else func.group_concat
    empty = literal_column("'{}'::jsonb") if dialect == "postgresql" else literal("{}")
    query = select(
        *group,
        func.sum(table.requests),
        func.sum(table.errors),
        func.sum(table.input_tokens),
        func.sum(table.output_tokens),
        func.sum(table.cost),
        agg(case((table.latency_count > 0, cast(table.latency_hist, Text))), literal(",")),
        agg(case((table.ttft_count > 0, cast(table.ttft_hist, Text))), literal(",")),
        func.sum(table.feedback),
        func.sum(table.thumbs),
        func.sum(table.thumbs_up),
        # Only the score maps that hold any (most rows have none, and each cast to text costs).
        agg(case((table.scores != empty, cast(table.scores, Text))), literal(",")),
    ).where(*where)
    if group:
        query = query.group_by(*group)
    width = len(group)
    for row in session.execute(query):
        requests, errors, tokens_in, tokens_out, cost, latency, ttft, feedback, thumbs, up, scores = row[
            width:
        ]
        if requests is None:  # no row at all (an ungrouped query still answers one)
            continue
        key = tuple(row[:width])
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell()
        cell.requests += int(requests)
        cell.errors += int(errors)
        cell.input_tokens += int(tokens_in)
        cell.output_tokens += int(tokens_out)
        cell.cost += float(cost)
        if latency:
            cell.latency.merge_all(orjson.loads(f"[{latency}]"))
        if ttft:
            cell.ttft.merge_all(orjson.loads(f"[{ttft}]"))
        cell.add_scores(int(feedback), int(thumbs), int(up), {})
        for stored in orjson.loads(f"[{scores}]") if scores else ():
            if stored:
                cell.add_scores(0, 0, 0, stored)


def roll_up_hour(store: Store, project_id: str, hour: int, *, only_dirty: bool = True) -> bool:
    """Recompute one hour in one transaction; False when it was not dirty (another replica did it)."""
    now = utcnow()
    with store.write() as session:
        if only_dirty:
            # First statement: on PostgreSQL it takes the hour's row lock (see the module docstring).
            cleared = session.execute(
                update(StatsRollupHour)
                .where(
                    StatsRollupHour.project_id == project_id,
                    StatsRollupHour.hour == hour,
                    StatsRollupHour.dirty.is_(True),
                )
                .values(dirty=False, rolled_at=now)
            )
            if not cleared.rowcount:  # type: ignore[attr-defined]  # a CursorResult
                return False
        else:
            insert_ = upsert.insert(store.dialect, StatsRollupHour)
            session.execute(
                insert_.values(
                    project_id=project_id, hour=hour, dirty=False, rolled_at=now
                ).on_conflict_do_update(
                    index_elements=["project_id", "hour"], set_={"dirty": False, "rolled_at": now}
                )
            )
        _write_hour(session, project_id, hour)
    return True


def due_hours(store: Store, now: datetime | None = None) -> list[tuple[str, int]]:
    """Dirty hours that ended at least SETTLE ago, oldest first."""
    now = now or utcnow()
    last_due = hour_of(now - SETTLE) - 1  # the last hour that ended SETTLE ago or more
    with store.session() as session:
        rows = session.execute(
            select(StatsRollupHour.project_id, StatsRollupHour.hour)
            .where(StatsRollupHour.dirty.is_(True), StatsRollupHour.hour <= last_due)
            .order_by(StatsRollupHour.hour, StatsRollupHour.project_id)
        )
        return [(p, h) for p, h in rows]


def roll_up_due(store: Store, now: datetime | None = None) -> int:
    """One round of the loop: every due dirty hour; how many were rolled up here."""
    done = 0
    for project_id, hour in due_hours(store, now):
        if roll_up_hour(store, project_id, hour):
            done += 1
    return done


def _span_hours(session: Session, dialect: str) -> set[tuple[str, int]]:
    """Every (project, hour) that has spans: one pass over the spans (for an existing database)."""
    hour = bucket_expression(dialect, HOUR_SECONDS)
    rows = session.execute(select(Span.project_id, hour).group_by(Span.project_id, hour))
    return {(project_id, int(number)) for project_id, number in rows}


def roll_up_all(store: Store, now: datetime | None = None) -> int:
    """Roll up every hour with spans that is not rolled up and clean (after an upgrade); a count."""
    now = now or utcnow()
    last_due = hour_of(now - SETTLE) - 1
    with store.session() as session:
        with_spans = _span_hours(session, store.dialect)
        rows = session.execute(
            select(StatsRollupHour.project_id, StatsRollupHour.hour).where(StatsRollupHour.dirty.is_(False))
        )
        clean = {(project_id, hour) for project_id, hour in rows}
    todo = sorted((h, p) for p, h in with_spans - clean if h <= last_due)
    for hour, project_id in todo:
        roll_up_hour(store, project_id, hour, only_dirty=False)
    return len(todo)


def delete_before(session: Session, project_id: str, cutoff: datetime) -> None:
    """Retention: forget roll-ups of the hours `cutoff` reaches into (the partial hour included:
    what is left of it is read from its spans until it too expires)."""
    last = hour_of(cutoff)
    for table in (StatsRollup, StatsRollupFacet):
        session.execute(delete(table).where(table.project_id == project_id, table.hour <= last))
    session.execute(
        delete(StatsRollupHour).where(StatsRollupHour.project_id == project_id, StatsRollupHour.hour <= last)
    )


BACKFILL_HOURS = 4  # never-rolled hours rolled up per round, besides the dirty ones
BACKFILL_WINDOW = 24  # hours looked at per round when walking back for them


def backfill(
    store: Store,
    before: int | None,
    *,
    limit: int = BACKFILL_HOURS,
    window: int = BACKFILL_WINDOW,
    now: datetime | None = None,
) -> tuple[int | None, int]:
    """Roll up a few hours that have spans but were never marked nor rolled up (spans written
    before roll-ups existed, or loaded by hand without `mark_dirty`), walking back from `before`
    (None: the newest hour that is due) one window of hours per call, by each project's
    (project, start_time) index. Returns the hour to continue from next round (None: the walk
    reached the oldest span and starts again from the newest) and how many hours it rolled up."""
    last_due = hour_of((now or utcnow()) - SETTLE) - 1
    top = last_due if before is None else min(before, last_due)
    bottom = top - window + 1
    hour = bucket_expression(store.dialect, HOUR_SECONDS)
    with store.session() as session:
        oldest = session.scalar(select(func.min(Span.start_time)))
        if oldest is None:
            return None, 0
        projects = set(session.scalars(select(Project.id)))
        projects |= set(session.scalars(select(StatsRollupHour.project_id).distinct()))
        with_spans: set[tuple[str, int]] = set()
        for project_id in sorted(projects):
            rows = session.execute(
                select(hour)
                .where(
                    Span.project_id == project_id,
                    Span.start_time >= hour_start(bottom),
                    Span.start_time < hour_start(top + 1),
                )
                .group_by(hour)
            )
            with_spans |= {(project_id, int(number)) for (number,) in rows}
        known = session.execute(
            select(StatsRollupHour.project_id, StatsRollupHour.hour).where(
                StatsRollupHour.hour >= bottom, StatsRollupHour.hour <= top
            )
        )
        todo = sorted(with_spans - {(p, h) for p, h in known}, key=lambda ph: (-ph[1], ph[0]))
    for project_id, number in todo[:limit]:
        roll_up_hour(store, project_id, number, only_dirty=False)
    if len(todo) > limit:
        return top, limit  # more in this window: the next round continues here
    following = bottom - 1
    return (None if following < hour_of(oldest) else following), len(todo)


class RollupLoop(Periodic):
    """Background service: rolls up the due dirty hours every `interval_seconds`, and a few hours
    that were never rolled up (`backfill`), so no operator has to run `fmops stats --rollup`."""

    task_name = "fmops-stats-rollup"
    failure_message = "stats roll-up round failed"

    def __init__(self, store: Store, interval_seconds: float) -> None:
        super().__init__(interval_seconds)
        self.store = store
        self._backfill_from: int | None = None

    async def run_round(self) -> None:
        done = await asyncio.to_thread(roll_up_due, self.store)
        self._backfill_from, filled = await asyncio.to_thread(backfill, self.store, self._backfill_from)
        if done or filled:
            log.info("stats hours rolled up", extra={"hours": done, "backfilled": filled})
