"""A background service that runs one round of work every so often, for as long as the server runs.

Alert evaluation, retention scheduling and stats roll-ups share this lifecycle: started on the
server's loop, a failed round is logged and retried next time (the database may be down for a
while), and closing cancels the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class Periodic:
    """Subclasses implement `run_round`; `wait_first` skips the round at start-up."""

    task_name = "fmops-periodic"
    failure_message = "background round failed"

    def __init__(self, interval_seconds: float, *, wait_first: bool = True) -> None:
        self.interval = interval_seconds
        self.wait_first = wait_first
        self._task: asyncio.Task[None] | None = None

    async def run_round(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def _run(self) -> None:
        if not self.wait_first:
            await self._round()
        while True:
            await asyncio.sleep(self.interval)
            await self._round()

    async def _round(self) -> None:
        try:
            await self.run_round()
        except Exception:  # try again next round
            log.exception(self.failure_message, extra={"service": type(self).__name__})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
