"""Bodies of the experiment routes: a variant's results with 95% intervals, and the comparisons."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from fmops.endpoints.schemas import VariantName
from fmops.server.schemas.base import Input, Output

__all__ = ["ExperimentPublic", "PromoteBody"]


class IntervalPublic(Output):
    low: float
    high: float


class RatePublic(Output):
    successes: int
    n: int
    value: float | None = Field(description="successes / n")
    interval: IntervalPublic | None = Field(description="Wilson 95% interval")


class MeanPublic(Output):
    n: int
    value: float | None
    sd: float | None = Field(description="Sample standard deviation")
    interval: IntervalPublic | None = Field(description="Student-t 95% interval of the mean")


class VariantResultPublic(Output):
    name: str
    weight: float
    calls: int
    error_rate: RatePublic
    latency_ms: MeanPublic = Field(description="Of successful calls")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost: MeanPublic = Field(description="Per successful call")
    positive_feedback: RatePublic = Field(
        description="Of the calls with thumbs (from people or applications), those whose thumbs sum above 0"
    )
    scores: dict[str, MeanPublic] = Field(description="Each evaluator score's mean, by name")


class ComparisonPublic(Output):
    variant: str
    metric: str = Field(description="error_rate, latency_ms, cost, positive_feedback or score:<name>")
    control_value: float | None
    value: float | None
    p_value: float | None = Field(description="Two-proportion z-test (rates) or Welch's t-test (means)")
    p_adjusted: float | None = Field(description="Holm-corrected over every comparison of the report")
    significant: bool = Field(description="p_adjusted < 0.05")
    better: bool | None = Field(
        description="Whether the variant is better than the control; null if not significant"
    )


class ExperimentPublic(Output):
    endpoint: str
    started_at: datetime
    control: str = Field(description="The first variant: every other one is compared with it")
    variants: list[VariantResultPublic]
    comparisons: list[ComparisonPublic]
    primary_metric: str = Field(description="What decides the winner")
    winner: str | None
    calls_needed: int | None = Field(description="More calls per variant to detect a small difference")
    verdict: str


class PromoteBody(Input):
    variant: VariantName = Field(description="The variant to serve from now on")
    note: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        None, description="Why, kept in the endpoint's history"
    )
