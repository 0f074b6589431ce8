"""The background service that evaluates every enabled alert rule each `alert_interval_seconds`."""

from __future__ import annotations

from fmops.alerts.evaluate import AlertEvaluator
from fmops.periodic import Periodic


class AlertLoop(Periodic):
    """First wait, then evaluate: a server starting up has no window of traffic to judge yet."""

    task_name = "fmops-alerts"
    failure_message = "alert evaluation round failed"

    def __init__(self, evaluator: AlertEvaluator, interval_seconds: float) -> None:
        super().__init__(interval_seconds)
        self.evaluator = evaluator

    async def run_round(self) -> None:
        await self.evaluator.evaluate_all()
