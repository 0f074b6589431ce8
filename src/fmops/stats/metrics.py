"""The numbers a dashboard shows for one group of spans (a time bucket, a model, the whole range).

Requests are root spans (no parent): a gateway call, or the outermost step of an application's
trace. Volume, errors, latency and TTFT are read from them. Tokens and cost are summed over every
span, since in an instrumented application the model calls that use tokens are the children.

Feedback and scores are attributed to the request they are about (their trace's root span), so a
rate is "of the requests made in this hour, how many got feedback", whenever it was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

LATENCY_QUANTILES = (0.5, 0.95, 0.99)
TTFT_QUANTILES = (0.5, 0.95)
# Who gives feedback: people and applications. Evaluators give scores, counted separately.
FEEDBACK_SOURCES = ("human", "api")


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile of sorted values, interpolated like PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


@dataclass
class ScoreStat:
    mean: float
    count: int


@dataclass
class Metrics:
    volume: int = 0  # requests (root spans)
    errors: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    feedback_count: int = 0  # requests that got feedback from a person or an application
    thumbs_count: int = 0
    thumbs_up: int = 0
    scores: dict[str, ScoreStat] = field(default_factory=dict)  # mean of each numeric score, by name

    @property
    def error_rate(self) -> float | None:
        return ratio(self.errors, self.volume)

    @property
    def feedback_rate(self) -> float | None:
        return ratio(self.feedback_count, self.volume)

    @property
    def feedback_positive_share(self) -> float | None:
        """Thumbs up among all thumbs given."""
        return ratio(self.thumbs_up, self.thumbs_count)

    def set_latency(self, values: Sequence[float | None]) -> None:
        self.latency_p50_ms, self.latency_p95_ms, self.latency_p99_ms = values

    def set_ttft(self, values: Sequence[float | None]) -> None:
        self.ttft_p50_ms, self.ttft_p95_ms = values

    def add_counts(self, other: Metrics) -> None:
        """Add what sums across groups (not percentiles): for a total over disjoint groups."""
        self.volume += other.volume
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.feedback_count += other.feedback_count
        self.thumbs_count += other.thumbs_count
        self.thumbs_up += other.thumbs_up
        for name, stat in other.scores.items():
            mine = self.scores.get(name)
            if mine is None:
                self.scores[name] = ScoreStat(stat.mean, stat.count)
            else:
                count = mine.count + stat.count
                mine.mean = (mine.mean * mine.count + stat.mean * stat.count) / count
                mine.count = count
