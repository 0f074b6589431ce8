"""Bodies of the evaluators and scorers routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fmops.evaluators import RuleCreate, RuleUpdate
from fmops.server.schemas.base import Output

__all__ = ["EvaluatorCreate", "EvaluatorPublic", "EvaluatorUpdate", "ScorerPublic", "ScorerUses"]

EvaluatorCreate = RuleCreate
EvaluatorUpdate = RuleUpdate
RunsAs = Literal["inline", "job"]


class EvaluatorPublic(Output):
    id: str
    name: str = Field(description="Also the name of the scores it writes")
    scorer: str
    config: dict[str, Any]
    model: str | None
    endpoint: str | None
    sample_rate: float
    enabled: bool
    created_at: datetime


class ScorerUses(Output):
    suite: bool = Field(description="In an eval suite's scorers (every scorer)")
    online_evaluator: bool = Field(description="In an online evaluator on live traces (no expected answer)")
    guardrail: bool = Field(description="As an endpoint's guardrail, on the request path")


class ScorerPublic(Output):
    name: str
    description: str
    runs_as: RunsAs = Field(
        description="inline: right after the response; job: a durable job (calls a model)"
    )
    needs_model: bool = Field(description="It calls a model (a judge): its `config.model` must exist")
    needs_expected: bool = Field(description="It compares the output with the case's `expected`")
    aggregates: bool = Field(
        description="Its run-level metric is its own aggregate (macro-F1, corpus BLEU), not the mean"
    )
    slow: bool = Field(description="It computes for milliseconds or more per case (a local encoder)")
    needs_record: bool = Field(description="It reads the finished call's latency or cost")
    usable_in: ScorerUses
    config_schema: dict[str, Any] = Field(description="JSON schema of its `config`")
