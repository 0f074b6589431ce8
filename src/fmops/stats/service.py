"""Dashboard data: a time series of the metrics, a breakdown by one dimension, or one total."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fmops.errors import UserError
from fmops.stats.aggregate import Aggregate, Aggregator
from fmops.stats.buckets import Bucket, bucket_expression, bucket_numbers, bucket_start, choose_bucket
from fmops.stats.filters import DIMENSION_COLUMNS, Dimension, StatsFilters
from fmops.stats.metrics import Metrics
from fmops.stats.rollup_read import Grouping, RollupReader, usable  # hourly roll-ups, long ranges
from fmops.store import Store

MAX_BREAKDOWN_ROWS = 500


@dataclass
class Point:
    time: datetime  # the bucket's start
    metrics: Metrics


@dataclass
class TimeSeries:
    bucket: Bucket
    filters: StatsFilters
    points: list[Point]  # every bucket of the range, oldest first, empty ones included
    total: Metrics
    approximate: bool = False  # percentiles from hourly roll-ups, within 1% (fmops.stats.rollup_read)


@dataclass
class BreakdownRow:
    group: dict[str, str | int | None]  # column name -> value, e.g. {"model": "gpt-4o"}
    metrics: Metrics


@dataclass
class Breakdown:
    by: Dimension
    filters: StatsFilters
    rows: list[BreakdownRow]  # the busiest groups first
    groups: int  # how many groups the range has; rows holds at most `limit` of them
    total: Metrics
    approximate: bool = False  # percentiles from hourly roll-ups, within 1% (fmops.stats.rollup_read)


class StatsService:
    def __init__(self, store: Store, *, rollups: bool = True) -> None:
        self.store = store
        self._aggregator = Aggregator(store)
        # Hourly roll-ups for long ranges; rollups=False always reads the spans (tests, benchmarks).
        self._rollups = RollupReader(store, self._aggregator) if rollups else None

    def _run(
        self, project_id: str | None, filters: StatsFilters, group: Sequence[Any], grouping: Grouping
    ) -> tuple[Aggregate, bool]:
        """Roll-ups where they answer the query (long ranges), else the exact pass over the spans."""
        if self._rollups is not None and project_id is not None and usable(project_id, filters, grouping):
            rolled = self._rollups.run(project_id, filters, grouping)
            if rolled is not None:
                return rolled, True
        return self._aggregator.run(project_id, filters, group), False

    def timeseries(
        self, project_id: str | None, filters: StatsFilters, bucket: Bucket | None = None
    ) -> TimeSeries:
        """One point per bucket; `bucket=None` picks minutes, hours or days from the range's length."""
        chosen = choose_bucket(filters, bucket)
        width = chosen.seconds
        group = [bucket_expression(self.store.dialect, width)]
        result, approximate = self._run(project_id, filters, group, Grouping(width=width))
        points = [
            Point(bucket_start(n, width), result.groups.get((n,), Metrics()))
            for n in bucket_numbers(filters, width)
        ]
        return TimeSeries(
            bucket=chosen, filters=filters, points=points, total=result.total, approximate=approximate
        )

    def breakdown(
        self, project_id: str | None, filters: StatsFilters, by: Dimension, *, limit: int = 50
    ) -> Breakdown:
        """The metrics of each value of `by` (requests without one are the `null` group)."""
        if not 1 <= limit <= MAX_BREAKDOWN_ROWS:
            raise UserError(f"limit must be between 1 and {MAX_BREAKDOWN_ROWS}", param="limit")
        columns = DIMENSION_COLUMNS[by]
        result, approximate = self._run(project_id, filters, columns, Grouping(dimension=by))
        names = [column.key for column in columns]
        rows = [
            BreakdownRow(dict(zip(names, key, strict=True)), metrics)
            for key, metrics in result.groups.items()
        ]
        # Busiest first; then by cost (groups of child spans have cost but no requests), then by name.
        rows.sort(key=lambda r: (-r.metrics.volume, -r.metrics.cost, [str(v) for v in r.group.values()]))
        return Breakdown(
            by=by,
            filters=filters,
            rows=rows[:limit],
            groups=len(rows),
            total=result.total,
            approximate=approximate,
        )

    def totals(self, project_id: str | None, filters: StatsFilters) -> Metrics:
        return self._run(project_id, filters, (), Grouping())[0].total
