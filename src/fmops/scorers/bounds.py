"""Latency and cost bounds: pass when the call was fast and cheap enough, from what the call recorded
(a span's `latency_ms` and `cost`; an eval runner sets them on the case from the traced call)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from fmops.scorers.base import FAIL, PASS, Case, Scorer, ScorerConfig, ScoreResult


class LatencyConfig(ScorerConfig):
    max_ms: float = Field(gt=0, le=86_400_000, description="Pass when the call took at most this long")


class LatencyBound(Scorer[LatencyConfig]):
    """1.0 ("pass") when the call's recorded latency is at most `max_ms`, else 0.0 ("fail");
    undecided ("no_latency") when the call recorded none. `data.latency_ms` is the latency."""

    name: ClassVar[str] = "latency"
    needs_record: ClassVar[bool] = True
    description: ClassVar[str] = "Passes when the call's recorded latency is within a bound"
    config_model: ClassVar[type[ScorerConfig]] = LatencyConfig

    def score(self, case: Case) -> ScoreResult:
        latency = case.latency_ms
        if latency is None:
            return ScoreResult.undecided("no_latency", "the call recorded no latency")
        ok = latency <= self.config.max_ms
        comment = f"{latency:.0f} ms" + ("" if ok else f", over the bound of {self.config.max_ms:g} ms")
        return ScoreResult(1.0 if ok else 0.0, PASS if ok else FAIL, comment, {"latency_ms": latency})


class CostConfig(ScorerConfig):
    max_usd: float = Field(ge=0, le=1_000_000, description="Pass when the call cost at most this (USD)")


class CostBound(Scorer[CostConfig]):
    """1.0 ("pass") when the call's recorded cost is at most `max_usd`, else 0.0 ("fail");
    undecided ("no_cost") when the call recorded none (a model without prices). `data.cost` is it."""

    name: ClassVar[str] = "cost"
    needs_record: ClassVar[bool] = True
    description: ClassVar[str] = "Passes when the call's recorded cost (USD) is within a bound"
    config_model: ClassVar[type[ScorerConfig]] = CostConfig

    def score(self, case: Case) -> ScoreResult:
        cost = case.cost
        if cost is None:
            return ScoreResult.undecided("no_cost", "the call recorded no cost (does the model have prices?)")
        ok = cost <= self.config.max_usd
        comment = f"${cost:.6g}" + ("" if ok else f", over the bound of ${self.config.max_usd:g}")
        return ScoreResult(1.0 if ok else 0.0, PASS if ok else FAIL, comment, {"cost": cost})
