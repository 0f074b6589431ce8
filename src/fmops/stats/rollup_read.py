"""Dashboards over long ranges from the hourly roll-ups (fmops.stats.rollup), not from every span.

Used when the buckets are an hour or longer, nothing filters or groups by key (roll-ups do not
keep it), the range is longer than ROLLUP_MIN_RANGE, and a project is given. A breakdown by user, or
one user's series, reads the per-user roll-ups (`stats_rollup_users`, which keep no other
dimension: with a model filter too, say, the exact path is taken); a breakdown by user or a user's
totals read the whole days whose 24 hours are all clean from their per-day sums (`user_day`). The range
splits into the whole hours that are rolled up and clean, read from `stats_rollups`, and the rest
(the range's partial first and last hours, the current hour, dirty hours, hours never rolled up),
read from the spans themselves, each span's values added to the same histograms, and the scores
of their traces looked up by trace id. Counts, sums, feedback and score means are the exact path's;
percentiles come from the merged histograms, within 1% of the exact ones. When too much of the
range would come from spans (a database not rolled up yet, many dirty hours), the caller takes the
exact path instead.

Scores are rolled up with their request's hour, which a new score marks dirty (see
fmops.stats.rollup). The score names summarised are the exact path's (`Aggregator._score_names`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, func, literal_column, select

from fmops.stats.aggregate import Aggregate, Aggregator, Key, join_scores
from fmops.stats.buckets import bucket_expression
from fmops.stats.filters import DIMENSION_COLUMNS, Dimension, StatsFilters
from fmops.stats.metrics import LATENCY_QUANTILES, TTFT_QUANTILES, Metrics, ScoreStat
from fmops.stats.rollup import (
    _LOG_GAMMA,
    DAY_HOURS,
    DIMENSIONS,
    HOUR_SECONDS,
    SPAN_COLUMNS,
    USER_DAY,
    ZERO_BUCKET,
    Cell,
    add_span_row,
    add_summed,
    add_trace_scores,
    hour_start,
)
from fmops.store import Store
from fmops.store.models import Span, StatsRollup, StatsRollupFacet, StatsRollupHour

# Shorter ranges read few enough spans to stay exact. (It was 36 hours: a day read every span of
# it, 1.9 s at 10,000,000 spans, where the roll-ups answer in tens of ms; benchmarks/trace_store_pg.py.)
ROLLUP_MIN_RANGE = timedelta(hours=3)
# Hours of the range that may come from spans: the larger of these, but never half the range or
# more (else the exact path is used: one SQL pass is cheaper than adding spans one by one here).
MAX_LIVE_HOURS = 48
MAX_LIVE_SHARE = 0.1
_EMPTY = ("[[],[]]", "[[], []]", "{}")  # an empty histogram or score map, as SQLite or PostgreSQL write it
_FILTERED = ("model", "provider", "endpoint", "prompt_name", "prompt_version", "variant")


@dataclass(frozen=True)
class Grouping:
    """Time buckets of `width` seconds, or the columns of a dimension, or nothing (one total)."""

    width: int | None = None
    dimension: Dimension | None = None


def by_user(filters: StatsFilters, grouping: Grouping) -> bool:
    """Whether the query is for the per-user roll-ups (`stats_rollup_users`), not the others."""
    return grouping.dimension == Dimension.user or filters.user is not None


def facet_of(filters: StatsFilters, grouping: Grouping) -> str | None:
    """The one-dimension roll-ups (`stats_rollup_facets`) that answer this query: `user`, `model`
    or `all`; None for `stats_rollups` (a filter or breakdown on another dimension)."""
    if by_user(filters, grouping):
        return "user"  # `usable` made sure nothing else filters
    others = [name for name in _FILTERED if name != "model" and getattr(filters, name) is not None]
    if others or grouping.dimension not in (None, Dimension.model):
        return None
    return "model" if grouping.dimension == Dimension.model or filters.model is not None else "all"


def usable(project_id: str | None, filters: StatsFilters, grouping: Grouping) -> bool:
    """Whether roll-ups can answer this query (the cheap checks; `RollupReader.run` may still decline)."""
    if project_id is None or filters.key_id is not None or grouping.dimension == Dimension.key:
        return False
    if filters.end - filters.start <= ROLLUP_MIN_RANGE:
        return False
    if grouping.width is not None and grouping.width % HOUR_SECONDS:
        return False
    if by_user(filters, grouping):
        # The user roll-ups keep no other dimension: by user, or one user's series and totals.
        return grouping.dimension in (None, Dimension.user) and all(
            getattr(filters, name) is None for name in _FILTERED
        )
    return True


class RollupReader:
    def __init__(self, store: Store, aggregator: Aggregator) -> None:
        self.store = store
        self.aggregator = aggregator

    def run(self, project_id: str, filters: StatsFilters, grouping: Grouping) -> Aggregate | None:
        """Metrics of each group and of all, like `Aggregator.run`; None when too little is rolled up."""
        start_s, end_s = filters.start.timestamp(), filters.end.timestamp()
        first_full = math.ceil(start_s / HOUR_SECONDS)
        last_full = math.floor(end_s / HOUR_SECONDS) - 1
        all_hours = math.ceil(end_s / HOUR_SECONDS) - math.floor(start_s / HOUR_SECONDS)
        # The score names the exact pass would summarise (all of them, unless there are very many).
        names = set(self.aggregator._score_names(project_id, filters))
        with self.store.session() as session:
            # One transaction: on SQLite one snapshot for both reads. On PostgreSQL an hour rolled
            # up between them is still read from spans (it is not in `clean`), never twice.
            marks = session.execute(
                select(StatsRollupHour.hour, StatsRollupHour.dirty).where(
                    StatsRollupHour.project_id == project_id,
                    StatsRollupHour.hour >= first_full,
                    StatsRollupHour.hour <= last_full,
                )
            ).all()
            clean = {hour for hour, dirty in marks if not dirty}
            if _costly_hours(
                session, project_id, marks, clean, first_full, last_full, all_hours
            ) > live_limit(all_hours):
                return None
            cells: dict[Key, Cell] = {}
            self._rolled(session, project_id, filters, grouping, clean, first_full, last_full, cells)
            intervals = _live_intervals(filters, clean, first_full, last_full)
            if intervals and self.store.dialect == "postgresql":
                self._live_sql(session, project_id, filters, grouping, intervals, cells, sorted(names))
            elif intervals:
                # No score name: no score since a day before the range, so none to look up.
                self._live(session, project_id, filters, grouping, intervals, cells, scored=bool(names))
        return _aggregate(cells, names)

    def _key(self, grouping: Grouping, users: bool = False) -> Callable[[Sequence[Any]], Key]:
        """The group key of a row whose first values are (hour, *DIMENSIONS), or (hour, user)."""
        if grouping.width is not None:
            per = grouping.width // HOUR_SECONDS
            return lambda row: (row[0] // per,)
        if users and grouping.dimension is not None:
            return lambda row: (row[1],)
        if grouping.dimension is not None:
            places = [1 + DIMENSIONS.index(c.key) for c in DIMENSION_COLUMNS[grouping.dimension]]
            return lambda row: tuple(row[i] for i in places)
        return lambda row: ()

    def _rolled(
        self,
        session: Any,
        project_id: str,
        filters: StatsFilters,
        grouping: Grouping,
        clean: set[int],
        first_full: int,
        last_full: int,
        cells: dict[Key, Cell],
    ) -> None:
        if not clean:
            return
        facet = facet_of(filters, grouping)
        table: Any = StatsRollupFacet if facet else StatsRollup
        where: list[ColumnElement[bool]] = [
            table.project_id == project_id,
            table.hour >= min(clean),
            table.hour <= max(clean),
        ]
        one_value: list[ColumnElement[bool]] = []  # a user's or model's rows alone
        if facet:
            where.append(table.facet == facet)
            value = filters.user if facet == "user" else filters.model if facet == "model" else None
            if value is not None:
                one_value.append(table.value == value)
                where += one_value
        else:
            for name in _FILTERED:
                value = getattr(filters, name)
                if value is not None:
                    where.append(getattr(table, name) == value)
        dirty = [hour for hour in range(min(clean), max(clean) + 1) if hour not in clean]
        if dirty:  # hours marked dirty (or never rolled up) between clean ones: from spans
            where.append(table.hour.not_in(dirty))
        group: list[Any]
        if grouping.width is not None:
            group = [table.hour // (grouping.width // HOUR_SECONDS)]
        elif facet and grouping.dimension is not None:
            group = [table.value]
        elif grouping.dimension is not None:
            group = [getattr(table, c.key) for c in DIMENSION_COLUMNS[grouping.dimension]]
        else:
            group = []
        if facet == "user" and grouping.width is None:
            days = _user_days(session, project_id, clean, first_full, last_full)
            if days:  # whole days from their `user_day` rows, the other hours from theirs
                by_day = [
                    table.project_id == project_id,
                    table.facet == USER_DAY,
                    table.hour.in_([day * DAY_HOURS for day in days]),
                    *one_value,
                ]
                add_summed(session, table, by_day, group, cells)
                # The other clean hours by name (a few dozen at the range's ends): with the range's
                # bounds and the days left out instead, PostgreSQL read every hour's rows.
                covered = {hour for day in days for hour in range(day * DAY_HOURS, (day + 1) * DAY_HOURS)}
                rest = sorted(clean - covered)
                if not rest:
                    return
                where = [table.project_id == project_id, table.facet == facet, table.hour.in_(rest)]
                where += one_value
        add_summed(session, table, where, group, cells)

    def _live(
        self,
        session: Any,
        project_id: str,
        filters: StatsFilters,
        grouping: Grouping,
        intervals: list[tuple[datetime, datetime]],
        cells: dict[Key, Cell],
        *,
        scored: bool = True,
    ) -> None:
        """Add the spans of the hours not rolled up, one by one, as a roll-up would."""
        users = by_user(filters, grouping)
        dims = [Span.user] if users else [getattr(Span, name) for name in DIMENSIONS]
        columns = select(Span.start_time, *dims, Span.trace_id, *SPAN_COLUMNS)
        key_of = self._key(grouping, users)
        roots: dict[str, list[Cell]] = {}
        # One query per interval, each over that interval alone: given the whole range's bounds too
        # (or the intervals OR'ed), SQLite walks every index entry of the range.
        rows = (
            row
            for low, high in intervals
            for row in session.execute(
                columns.where(*dataclasses.replace(filters, start=low, end=high).conditions(project_id))
            )
        )
        for row in rows:
            # The hour number in place of the start time, for the key: whole seconds, as in SQL.
            hour = int(row[0].timestamp()) // HOUR_SECONDS
            key = key_of((hour, *row[1:]))
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            add_span_row(cell, row)
            if row[-7]:  # a root span: its trace's scores are its request's
                roots.setdefault(row[1 + len(dims)], []).append(cell)
        if scored:
            add_trace_scores(session, project_id, filters.start, roots)

    def _live_sql(
        self,
        session: Any,
        project_id: str,
        filters: StatsFilters,
        grouping: Grouping,
        intervals: list[tuple[datetime, datetime]],
        cells: dict[Key, Cell],
        names: list[str],
    ) -> None:
        """`_live` on PostgreSQL, summed there: per group the sums (with the scores of the roots'
        traces joined as the exact pass joins them) and the count of each histogram bucket, a few
        hundred rows where `_live` read every span (0.35 s for the hour of spans a day's edges hold
        at 10,000,000 spans; benchmarks/trace_store_pg.py)."""
        group: list[Any]
        if grouping.width is not None:
            group = [bucket_expression("postgresql", grouping.width)]
        elif by_user(filters, grouping) and grouping.dimension is not None:
            group = [Span.user]
        elif grouping.dimension is not None:
            group = list(DIMENSION_COLUMNS[grouping.dimension])
        else:
            group = []
        width = len(group)
        root = Span.parent_span_id.is_(None)
        scores = self.aggregator._scores_by_trace(project_id, filters, names) if names else None

        def cell_of(row: Sequence[Any]) -> Cell:
            key = tuple(row[:width])
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            return cell

        for low, high in intervals:
            where = dataclasses.replace(filters, start=low, end=high).conditions(project_id)
            query = select(
                *group,
                func.sum(case((root, 1), else_=0)),
                func.sum(case((and_(root, Span.status == "error"), 1), else_=0)),
                func.sum(Span.input_tokens),
                func.sum(Span.output_tokens),
                func.sum(Span.cost),
            ).where(*where)
            if scores is not None:
                query = join_scores(query, scores, names)
            if group:
                query = query.group_by(*group)
            for row in session.execute(query):
                requests, errors, tokens_in, tokens_out, cost, *score_sums = row[width:]
                if requests is None:  # no span: an ungrouped query still answers one row
                    continue
                cell = cell_of(row)
                cell.requests += int(requests)
                cell.errors += int(errors)
                cell.input_tokens += int(tokens_in or 0)
                cell.output_tokens += int(tokens_out or 0)
                cell.cost += float(cost or 0.0)
                if score_sums:
                    feedback, thumbs, up, *per_name = score_sums
                    per = {
                        name: [float(total), int(count)]
                        for name, total, count in zip(names, per_name[::2], per_name[1::2], strict=True)
                        if count
                    }
                    cell.add_scores(int(feedback or 0), int(thumbs or 0), int(up or 0), per)
            for column, which in ((Span.latency_ms, "latency"), (Span.ttft_ms, "ttft")):
                # fmops.stats.rollup.bucket_of in SQL; the constants as text, so that GROUP BY and
                # SELECT read the same expression.
                bucket = case(
                    (
                        column > 0,
                        cast(func.floor(func.ln(column) / literal_column(repr(_LOG_GAMMA))), Integer),
                    ),
                    else_=literal_column(str(ZERO_BUCKET)),
                )
                counts = (
                    select(*group, bucket, func.count())
                    .where(*where, root, column.is_not(None))
                    .group_by(*group, bucket)
                )
                for row in session.execute(counts):
                    histogram = getattr(cell_of(row), which).counts
                    number, count = int(row[width]), int(row[width + 1])
                    histogram[number] = histogram.get(number, 0) + count


def _user_days(session: Any, project_id: str, clean: set[int], first_full: int, last_full: int) -> list[int]:
    """The days inside the range whose 24 hours are all clean and that have `user_day` rows (a day
    rolled up before those existed has none until one of its hours is rolled again)."""
    whole = [
        day
        for day in range(math.ceil(first_full / DAY_HOURS), (last_full + 1) // DAY_HOURS)
        if all(hour in clean for hour in range(day * DAY_HOURS, (day + 1) * DAY_HOURS))
    ]
    if not whole:
        return []
    found = session.scalars(
        select(StatsRollupFacet.hour)
        .where(
            StatsRollupFacet.project_id == project_id,
            StatsRollupFacet.facet == USER_DAY,
            StatsRollupFacet.hour.in_([day * DAY_HOURS for day in whole]),
        )
        .distinct()
    )
    return sorted(hour // DAY_HOURS for hour in found)


def live_limit(all_hours: int) -> float:
    """How many of the range's hours may be read from spans (see MAX_LIVE_HOURS)."""
    return min(max(MAX_LIVE_HOURS, MAX_LIVE_SHARE * all_hours), all_hours // 2)


def _costly_hours(
    session: Any,
    project_id: str,
    marks: Sequence[Any],
    clean: set[int],
    first_full: int,
    last_full: int,
    all_hours: int,
) -> int:
    """How many hours of the range must be read from spans that may hold many: the partial first
    and last ones, dirty ones, and unmarked ones older than the project's first marked hour (spans
    stored before the upgrade, until `fmops stats --rollup`). An unmarked hour since then had no
    span stored through the trace writer: it is still read from spans, but is likely empty (a
    night without traffic), and does not count."""
    first_marked = session.scalar(
        select(func.min(StatsRollupHour.hour)).where(StatsRollupHour.project_id == project_id)
    )
    edges = all_hours - max(last_full - first_full + 1, 0)
    dirty = len(marks) - len(clean)
    before = last_full + 1 if first_marked is None else min(first_marked, last_full + 1)
    return edges + dirty + max(before - first_full, 0)


def _live_intervals(
    filters: StatsFilters, clean: set[int], first_full: int, last_full: int
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) outside the clean rolled-up hours, as few intervals as can be."""
    intervals: list[tuple[datetime, datetime]] = []
    low: datetime | None = filters.start
    for hour in range(first_full, last_full + 1):
        if hour in clean:
            if low is not None and low < hour_start(hour):
                intervals.append((low, hour_start(hour)))
            low = None
        elif low is None:
            low = hour_start(hour)
    if low is None:  # the partial last hour, after the last whole one
        low = hour_start(last_full + 1)
    if low < filters.end:
        intervals.append((low, filters.end))
    return intervals


def _metrics(cell: Cell, names: set[str]) -> Metrics:
    metrics = Metrics(
        volume=cell.requests,
        errors=cell.errors,
        input_tokens=cell.input_tokens,
        output_tokens=cell.output_tokens,
        cost=cell.cost,
        feedback_count=cell.feedback,
        thumbs_count=cell.thumbs,
        thumbs_up=cell.thumbs_up,
        scores={
            name: ScoreStat(mean=total / count, count=int(count))
            for name, (total, count) in cell.scores.items()
            if count and name in names
        },
    )
    metrics.set_latency(cell.latency.quantiles(LATENCY_QUANTILES))
    metrics.set_ttft(cell.ttft.quantiles(TTFT_QUANTILES))
    return metrics


def _aggregate(cells: dict[Key, Cell], names: set[str]) -> Aggregate:
    groups: dict[Key, Metrics] = {}
    everything = Cell()
    total = Metrics()
    for key, cell in cells.items():
        metrics = groups[key] = _metrics(cell, names)
        everything.latency.merge(cell.latency)
        everything.ttft.merge(cell.ttft)
        total.add_counts(metrics)
    total.set_latency(everything.latency.quantiles(LATENCY_QUANTILES))
    total.set_ttft(everything.ttft.quantiles(TTFT_QUANTILES))
    return Aggregate(groups=groups, total=total)
