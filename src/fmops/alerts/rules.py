"""What an alert rule watches: a metric of the stats series, compared with a threshold over a window."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from fmops.stats import Metrics


class AlertMetric(StrEnum):
    volume = "volume"
    errors = "errors"
    error_rate = "error_rate"
    latency_p50_ms = "latency_p50_ms"
    latency_p95_ms = "latency_p95_ms"
    latency_p99_ms = "latency_p99_ms"
    ttft_p50_ms = "ttft_p50_ms"
    ttft_p95_ms = "ttft_p95_ms"
    input_tokens = "input_tokens"
    output_tokens = "output_tokens"
    cost = "cost"
    cost_per_hour = "cost_per_hour"
    feedback_rate = "feedback_rate"
    feedback_positive_share = "feedback_positive_share"
    score_mean = "score_mean"  # of the score named by the rule's filters: {"score": "judge"}
    # The share of calls a guardrail policy blocked (any policy, or the one in the rule's filters:
    # {"policy": "no-pii"}); read from the decision spans (fmops.stats.guardrails).
    guardrail_block_rate = "guardrail_block_rate"

    @property
    def is_fraction(self) -> bool:
        return self in _FRACTIONS


_FRACTIONS = {
    AlertMetric.error_rate,
    AlertMetric.feedback_rate,
    AlertMetric.feedback_positive_share,
    AlertMetric.guardrail_block_rate,
}

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Reading:
    """A metric's value over a window, and how many samples it rests on (compared with min_count)."""

    value: float | None
    count: int


def read(
    metric: AlertMetric, metrics: Metrics, *, window_seconds: int, score: str | None, blocked: int = 0
) -> Reading:
    """The rule's metric from the window's totals (`blocked`: the calls guardrails blocked in it)."""
    if metric == AlertMetric.guardrail_block_rate:
        return Reading(blocked / metrics.volume if metrics.volume else None, metrics.volume)
    if metric == AlertMetric.score_mean:
        stat = metrics.scores.get(score or "")
        return Reading(None, 0) if stat is None else Reading(stat.mean, stat.count)
    if metric == AlertMetric.feedback_positive_share:
        return Reading(metrics.feedback_positive_share, metrics.thumbs_count)
    if metric == AlertMetric.cost_per_hour:
        return Reading(metrics.cost * 3600 / window_seconds, metrics.volume)
    value = getattr(metrics, metric.value)
    return Reading(None if value is None else float(value), metrics.volume)
