"""Bodies of the alerts routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fmops.alerts import AlertMetric, AlertRuleCreate, AlertRuleUpdate
from fmops.server.schemas.base import Output

__all__ = ["AlertEventPublic", "AlertRuleCreate", "AlertRulePublic", "AlertRuleUpdate", "EvaluationPublic"]


class AlertRulePublic(Output):
    id: str
    name: str
    metric: AlertMetric
    operator: str
    threshold: float
    window_seconds: int
    filters: dict[str, Any]
    min_count: int
    webhook_url: str | None
    enabled: bool
    state: str = Field(description="ok or firing")
    last_value: float | None = Field(description="The metric at the last evaluation")
    last_evaluated_at: datetime | None
    created_at: datetime


class AlertEventPublic(Output):
    id: str
    rule_id: str
    state: str = Field(description="firing or resolved")
    value: float | None
    threshold: float
    delivered: bool = Field(description="The webhook accepted it (false also when the rule has none)")
    delivery_error: str | None
    created_at: datetime


class EvaluationPublic(Output):
    rule: AlertRulePublic
    value: float | None
    count: int = Field(description="Samples the value rests on (requests, thumbs or scores)")
    breached: bool | None = Field(description="null: no verdict (fewer samples than min_count, or no value)")
    event: AlertEventPublic | None = Field(description="The event this evaluation fired or resolved, if any")
