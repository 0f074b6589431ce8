"""Bodies of the stats routes: the same metrics for a time bucket, a breakdown group and the total."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field

from fmops.server.schemas.base import Output
from fmops.stats import Bucket, Dimension, Metrics

# Stats roll-ups: long ranges read hourly histograms, whose percentiles are within 1% of the exact ones.
Percentiles = Literal["exact", "approximate"]
PERCENTILES = "exact, or approximate (within 1%) where a long range was read from hourly roll-ups"


class ScoreStatPublic(Output):
    mean: float
    count: int


class MetricsPublic(Output):
    """Requests are root spans; tokens and cost sum every span; rates are null when nothing was counted."""

    volume: int = Field(description="Requests (root spans)")
    errors: int
    error_rate: float | None = Field(description="errors / volume")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None = Field(description="Time to first token (streamed calls)")
    ttft_p95_ms: float | None
    input_tokens: int
    output_tokens: int
    cost: float
    feedback_count: int = Field(description="Requests that got feedback from a person or an application")
    feedback_rate: float | None = Field(description="feedback_count / volume")
    thumbs_count: int
    feedback_positive_share: float | None = Field(description="Thumbs up among all thumbs")
    scores: dict[str, ScoreStatPublic] = Field(description="Mean of each numeric score (evaluators, people)")

    @classmethod
    def of(cls, metrics: Metrics, **extra: Any) -> Self:
        """These metrics, plus the fields a subclass adds (a point's time, a row's group)."""
        fields = {name: getattr(metrics, name) for name in MetricsPublic.model_fields}
        fields["scores"] = {name: vars(stat) for name, stat in metrics.scores.items()}
        return cls.model_validate(fields | extra)


class PointPublic(MetricsPublic):
    time: datetime = Field(description="Start of the bucket (UTC)")


class TimeSeriesPublic(Output):
    bucket: Bucket
    bucket_seconds: int
    start: datetime
    end: datetime
    points: list[PointPublic]
    total: MetricsPublic = Field(description="The whole range as one group")
    percentiles: Percentiles = Field("exact", description=PERCENTILES)


class BreakdownRowPublic(MetricsPublic):
    group: dict[str, str | int | None] = Field(description='The group\'s values, e.g. {"model": "gpt-4o"}')


class BreakdownPublic(Output):
    by: Dimension
    start: datetime
    end: datetime
    groups: int = Field(description="How many groups the range has; rows lists the busiest")
    rows: list[BreakdownRowPublic]
    total: MetricsPublic
    percentiles: Percentiles = Field("exact", description=PERCENTILES)
