"""Dashboards over long ranges from the hourly roll-ups (fmops.stats.rollup), not from every span.

Used when the buckets are an hour or longer, nothing filters or groups by key or user (roll-ups
do not keep them), the range is longer than ROLLUP_MIN_RANGE, and a project is given. The range
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

import orjson
from sqlalchemy import ColumnElement, Text, cast, func, select

from fmops.stats.aggregate import Aggregate, Aggregator, Key
from fmops.stats.filters import DIMENSION_COLUMNS, Dimension, StatsFilters
from fmops.stats.metrics import LATENCY_QUANTILES, TTFT_QUANTILES, Metrics, ScoreStat
from fmops.stats.rollup import (
    DIMENSIONS,
    HOUR_SECONDS,
    SPAN_COLUMNS,
    Cell,
    add_span_row,
    add_trace_scores,
    hour_start,
)
from fmops.store import Store
from fmops.store.models import Span, StatsRollup, StatsRollupHour

ROLLUP_MIN_RANGE = timedelta(hours=36)  # shorter ranges read few enough spans to stay exact
# Hours of the range that may come from spans: the larger of these (else the exact path is used).
MAX_LIVE_HOURS = 48
MAX_LIVE_SHARE = 0.1
_EMPTY = ("[[],[]]", "[[], []]", "{}")  # an empty histogram or score map, as SQLite or PostgreSQL write it
_FILTERED = ("model", "provider", "endpoint", "prompt_name", "prompt_version", "variant")


@dataclass(frozen=True)
class Grouping:
    """Time buckets of `width` seconds, or the columns of a dimension, or nothing (one total)."""

    width: int | None = None
    dimension: Dimension | None = None


def usable(project_id: str | None, filters: StatsFilters, grouping: Grouping) -> bool:
    """Whether roll-ups can answer this query (the cheap checks; `RollupReader.run` may still decline)."""
    if project_id is None or filters.key_id is not None or filters.user is not None:
        return False
    if filters.end - filters.start <= ROLLUP_MIN_RANGE:
        return False
    if grouping.width is not None and grouping.width % HOUR_SECONDS:
        return False
    return grouping.dimension not in (Dimension.key, Dimension.user)


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
            if _costly_hours(session, project_id, marks, clean, first_full, last_full, all_hours) > max(
                MAX_LIVE_HOURS, MAX_LIVE_SHARE * all_hours
            ):
                return None
            cells: dict[Key, Cell] = {}
            self._rolled(session, project_id, filters, grouping, clean, first_full, last_full, cells)
            intervals = _live_intervals(filters, clean, first_full, last_full)
            if intervals:
                self._live(session, project_id, filters, grouping, intervals, cells)
        # The score names the exact pass would summarise (all of them, unless there are very many).
        names = set(self.aggregator._score_names(project_id, filters))
        return _aggregate(cells, names)

    def _key(self, grouping: Grouping) -> Callable[[Sequence[Any]], Key]:
        """The group key of a row whose first values are (hour, *DIMENSIONS)."""
        if grouping.width is not None:
            per = grouping.width // HOUR_SECONDS
            return lambda row: (row[0] // per,)
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
        table = StatsRollup
        where: list[ColumnElement[bool]] = [
            table.project_id == project_id,
            table.hour >= min(clean),
            table.hour <= max(clean),
        ]
        for name in _FILTERED:
            value = getattr(filters, name)
            if value is not None:
                where.append(getattr(table, name) == value)
        query = select(
            table.hour,
            *(getattr(table, name) for name in DIMENSIONS),
            table.requests,
            table.errors,
            table.input_tokens,
            table.output_tokens,
            table.cost,
            # As text, decoded here: SQLAlchemy's JSON processing was half the time of a 30-day read,
            # and most TTFT histograms and score maps are empty, which needs no decoding at all.
            cast(table.latency_hist, Text),
            cast(table.ttft_hist, Text),
            table.feedback,
            table.thumbs,
            table.thumbs_up,
            cast(table.scores, Text),
        ).where(*where)
        key_of = self._key(grouping)
        for row in session.execute(query):
            if row[0] not in clean:
                continue
            key = key_of(row)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            requests, errors, tokens_in, tokens_out, cost, latency, ttft, feedback, thumbs, up, scores = row[
                -11:
            ]
            cell.requests += requests
            cell.errors += errors
            cell.input_tokens += tokens_in
            cell.output_tokens += tokens_out
            cell.cost += cost
            if latency not in _EMPTY:
                cell.latency.merge_stored(orjson.loads(latency))
            if ttft not in _EMPTY:
                cell.ttft.merge_stored(orjson.loads(ttft))
            if feedback or thumbs or scores not in _EMPTY:
                cell.add_scores(feedback, thumbs, up, orjson.loads(scores))

    def _live(
        self,
        session: Any,
        project_id: str,
        filters: StatsFilters,
        grouping: Grouping,
        intervals: list[tuple[datetime, datetime]],
        cells: dict[Key, Cell],
    ) -> None:
        """Add the spans of the hours not rolled up, one by one, as a roll-up would."""
        dims = [getattr(Span, name) for name in DIMENSIONS]
        columns = select(Span.start_time, *dims, Span.trace_id, *SPAN_COLUMNS)
        key_of = self._key(grouping)
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
                roots.setdefault(row[1 + len(DIMENSIONS)], []).append(cell)
        add_trace_scores(session, project_id, filters.start, roots)


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
