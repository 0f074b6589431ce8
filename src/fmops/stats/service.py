"""Dashboard data: a time series of the metrics, a breakdown by one dimension, or one total."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fmops.errors import UserError
from fmops.stats.aggregate import Aggregator
from fmops.stats.buckets import Bucket, bucket_expression, bucket_numbers, bucket_start, choose_bucket
from fmops.stats.filters import DIMENSION_COLUMNS, Dimension, StatsFilters
from fmops.stats.metrics import Metrics
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


class StatsService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._aggregator = Aggregator(store)

    def timeseries(
        self, project_id: str | None, filters: StatsFilters, bucket: Bucket | None = None
    ) -> TimeSeries:
        """One point per bucket; `bucket=None` picks minutes, hours or days from the range's length."""
        chosen = choose_bucket(filters, bucket)
        width = chosen.seconds
        result = self._aggregator.run(project_id, filters, [bucket_expression(self.store.dialect, width)])
        points = [
            Point(bucket_start(n, width), result.groups.get((n,), Metrics()))
            for n in bucket_numbers(filters, width)
        ]
        return TimeSeries(bucket=chosen, filters=filters, points=points, total=result.total)

    def breakdown(
        self, project_id: str | None, filters: StatsFilters, by: Dimension, *, limit: int = 50
    ) -> Breakdown:
        """The metrics of each value of `by` (requests without one are the `null` group)."""
        if not 1 <= limit <= MAX_BREAKDOWN_ROWS:
            raise UserError(f"limit must be between 1 and {MAX_BREAKDOWN_ROWS}", param="limit")
        columns = DIMENSION_COLUMNS[by]
        result = self._aggregator.run(project_id, filters, columns)
        names = [column.key for column in columns]
        rows = [
            BreakdownRow(dict(zip(names, key, strict=True)), metrics)
            for key, metrics in result.groups.items()
        ]
        # Busiest first; then by cost (groups of child spans have cost but no requests), then by name.
        rows.sort(key=lambda r: (-r.metrics.volume, -r.metrics.cost, [str(v) for v in r.group.values()]))
        return Breakdown(by=by, filters=filters, rows=rows[:limit], groups=len(rows), total=result.total)

    def totals(self, project_id: str | None, filters: StatsFilters) -> Metrics:
        return self._aggregator.run(project_id, filters).total
