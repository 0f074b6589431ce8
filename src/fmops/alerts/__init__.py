"""Alerts: threshold rules on the stats series that fire once to a webhook, and resolve once.

Rules are kept by `AlertService`; `evaluate.AlertEvaluator` judges them, `loop.AlertLoop` runs it in
the server, and `webhook.post_json` delivers what fires.
"""

from fmops.alerts.rules import AlertMetric
from fmops.alerts.schemas import AlertRuleCreate, AlertRuleUpdate, RuleFilters
from fmops.alerts.service import AlertService

__all__ = ["AlertMetric", "AlertRuleCreate", "AlertRuleUpdate", "AlertService", "RuleFilters"]
