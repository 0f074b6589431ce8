"""The local job worker: a separate process that claims queued jobs and runs their handlers.

A heartbeat thread keeps the job alive in the table and carries stop requests (cancel, shutdown,
job taken away) to the handler through its context. A handler that ignores a cancel for longer
than `CANCEL_GRACE_S` has its process ended; the supervisor starts a fresh one and the reaper
records the job as cancelled.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from datetime import timedelta
from typing import Any

import orjson

from fmops.jobs.context import JobCancelled, JobContext, RetryableJobError
from fmops.jobs.registry import get_kind, kinds
from fmops.jobs.service import Claimed, JobService, JobStatus
from fmops.settings import Settings

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 30.0


class Worker:
    def __init__(self, service: JobService, settings: Settings, stop: threading.Event | Any) -> None:
        self.service = service
        self.settings = settings
        self.stop = stop
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._last_reap = 0.0

    def run(self) -> None:
        log.info("job worker started", extra={"worker": self.worker_id})
        while not self.stop.is_set():
            try:
                self._reap_if_due()
                claimed = self.service.claim(self.worker_id, sorted(kinds()))
            except Exception:
                log.exception("job worker could not reach the store; retrying")
                self.stop.wait(max(self.settings.job_poll_seconds, 1.0))
                continue
            if claimed is None:
                self.stop.wait(self.settings.job_poll_seconds)
                continue
            self.execute(claimed)
        log.info("job worker stopped", extra={"worker": self.worker_id})

    def _reap_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_reap < self.settings.job_heartbeat_seconds:
            return
        self._last_reap = now
        for job_id, status in self.service.reap_stale(timedelta(seconds=self.settings.job_stale_seconds)):
            log.warning("stale job reaped", extra={"job": job_id, "status": str(status)})

    def execute(self, claimed: Claimed) -> None:
        ctx = JobContext(self.service, claimed.id, claimed.project_id, claimed.state, self.settings)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claimed.id, ctx, done), daemon=True)
        beat.start()
        log.info("job started", extra={"job": claimed.id, "kind": claimed.kind, "attempt": claimed.attempt})
        try:
            self._run_handler(claimed, ctx)
        finally:
            done.set()
            beat.join(timeout=5)

    def _run_handler(self, claimed: Claimed, ctx: JobContext) -> None:
        svc, wid = self.service, self.worker_id
        try:
            kind = get_kind(claimed.kind)
            result = kind.run(ctx, kind.parse(claimed.params))
            if result is not None:
                result = orjson.loads(orjson.dumps(result))  # results must be JSON
            svc.finish(claimed.id, wid, JobStatus.succeeded, result=result, message="done")
        except JobCancelled:
            if ctx.stop_reason == "shutdown":
                svc.requeue(
                    claimed.id, wid, reason="interrupted by shutdown; will resume", count_attempt=False
                )
            elif ctx.stop_reason == "cancelled":
                svc.finish(claimed.id, wid, JobStatus.cancelled, message="cancelled")
            # "lost": the reaper already gave the job to someone else; record nothing.
        except RetryableJobError as exc:
            ctx.log(f"transient failure: {exc}", "warning")
            svc.requeue(claimed.id, wid, reason=f"transient failure: {exc}", count_attempt=True)
        except Exception as exc:
            ctx.log("".join(traceback.format_exception(exc)), "error")
            svc.finish(claimed.id, wid, JobStatus.failed, error=f"{type(exc).__name__}: {exc}")
        log.info("job ended", extra={"job": claimed.id, "kind": claimed.kind})

    def _heartbeat(self, job_id: str, ctx: JobContext, done: threading.Event) -> None:
        cancel_seen: float | None = None
        while not done.wait(self.settings.job_heartbeat_seconds):
            if self.stop.is_set():
                ctx.stop("shutdown")
            try:
                state = self.service.heartbeat(job_id, self.worker_id)
            except Exception:
                log.warning("heartbeat failed; will retry", extra={"job": job_id})
                continue
            if state is None:
                ctx.stop("lost")
            elif state:
                ctx.stop("cancelled")
                cancel_seen = cancel_seen or time.monotonic()
                if time.monotonic() - cancel_seen > CANCEL_GRACE_S:
                    log.error("job ignored its cancel; ending the worker process", extra={"job": job_id})
                    os._exit(3)


class StopSignal:
    """Stop when the supervisor says so, on SIGTERM, or when the parent process is gone.

    A signal handler must not touch the multiprocessing Event (its lock may be held by the very
    wait the signal interrupted), so SIGTERM only sets a plain flag, seen within one wait period.
    """

    def __init__(self, shared: Any) -> None:
        self._shared = shared
        self._flag = False
        self._parent = os.getppid()

    def request(self, *_: object) -> None:
        self._flag = True

    def is_set(self) -> bool:
        return self._flag or self._shared.is_set() or os.getppid() != self._parent

    def wait(self, timeout: float) -> bool:
        if not self.is_set():
            self._shared.wait(min(timeout, 1.0))
        return self.is_set()


def worker_main(settings_data: dict[str, Any], shared_stop: Any) -> None:
    """Entry point of a worker process (spawned by the supervisor)."""
    from fmops.logs import configure_logging
    from fmops.plugins import load_modules
    from fmops.settings import load_settings
    from fmops.store import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    stop = StopSignal(shared_stop)
    signal.signal(signal.SIGTERM, stop.request)
    settings = load_settings(settings_data)
    configure_logging(settings.log_level, settings.log_format)
    load_modules(settings.plugins)
    store = Store(settings.database_url, durable=settings.trace_durability == "strict")
    try:
        Worker(JobService(store, max_attempts=settings.job_max_attempts), settings, stop).run()
    finally:
        store.dispose()
