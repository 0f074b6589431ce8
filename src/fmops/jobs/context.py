"""What a running job handler sees: its params, a checkpoint to resume from, progress, log, cancellation."""

from __future__ import annotations

import threading
from typing import Any

from fmops.jobs.service import JobService
from fmops.settings import Settings, load_settings


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled (or taken away); the worker records it."""


class RetryableJobError(Exception):
    """Raise from a handler for a transient failure: the job is queued again while attempts remain."""


class JobContext:
    def __init__(
        self,
        service: JobService,
        job_id: str,
        project_id: str,
        state: dict[str, Any] | None,
        settings: Settings | None = None,
    ) -> None:
        self._service = service
        self._settings = settings
        self.job_id = job_id
        self.project_id = project_id
        self.state: dict[str, Any] = dict(state or {})
        self._stop = threading.Event()
        self.stop_reason = ""

    @property
    def settings(self) -> Settings:
        """The worker's settings, for handlers that build services; outside a worker (tests), read
        from the same sources a worker reads (environment, fmops.toml)."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def stop(self, reason: str) -> None:
        """Called by the worker's heartbeat thread (cancel requested, shutdown, job lost)."""
        self.stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the job must stop; call it between units of work."""
        if self._stop.is_set():
            raise JobCancelled(self.stop_reason)

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.check()
        self._service.set_progress(self.job_id, max(0.0, min(1.0, fraction)), message)

    def log(self, line: str, level: str = "info") -> None:
        self._service.append_log(self.job_id, line, level)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Persist resumable state; a retried attempt starts with it in `ctx.state`."""
        self.state = dict(state)
        self._service.save_state(self.job_id, self.state)

    def sleep(self, seconds: float) -> None:
        """Wait, waking early (and raising JobCancelled) when the job must stop."""
        if self._stop.wait(seconds):
            raise JobCancelled(self.stop_reason)
