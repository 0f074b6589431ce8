"""Bodies of the evaluators and scorers routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fmops.evaluators import RuleCreate, RuleUpdate
from fmops.server.schemas.base import Output

__all__ = ["EvaluatorCreate", "EvaluatorPublic", "EvaluatorUpdate", "ScorerPublic"]

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


class ScorerPublic(Output):
    name: str
    description: str
    runs_as: RunsAs = Field(
        description="inline: right after the response; job: a durable job (calls a model)"
    )
    config_schema: dict[str, Any]
