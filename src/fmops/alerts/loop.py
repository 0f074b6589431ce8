"""The background service that evaluates every enabled alert rule each `alert_interval_seconds`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fmops.alerts.evaluate import AlertEvaluator

log = logging.getLogger(__name__)


class AlertLoop:
    def __init__(self, evaluator: AlertEvaluator, interval_seconds: float) -> None:
        self.evaluator = evaluator
        self.interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fmops-alerts")

    async def _run(self) -> None:
        while True:
            # First wait, then evaluate: a server starting up has no window of traffic to judge yet.
            await asyncio.sleep(self.interval)
            try:
                await self.evaluator.evaluate_all()
            except Exception:  # the database may be down for a while; try again next round
                log.exception("alert evaluation round failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
