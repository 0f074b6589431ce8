"""Dashboard data: time series and breakdowns of volume, errors, latency, tokens, cost, feedback, scores."""

from fmops.stats.buckets import Bucket
from fmops.stats.filters import Dimension, StatsFilters
from fmops.stats.metrics import Metrics, ScoreStat
from fmops.stats.service import Breakdown, BreakdownRow, Point, StatsService, TimeSeries

__all__ = [
    "Breakdown",
    "BreakdownRow",
    "Bucket",
    "Dimension",
    "Metrics",
    "Point",
    "ScoreStat",
    "StatsFilters",
    "StatsService",
    "TimeSeries",
]
