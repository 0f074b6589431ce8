"""`fmops worker`: job workers without the API, for a worker machine or pod beside the gateways'."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer

from fmops.cli.common import settings
from fmops.errors import UserError
from fmops.settings import load_settings

log = logging.getLogger("fmops.worker")


def worker(
    processes: int | None = typer.Option(None, help="Job worker processes (FMOPS_WORKERS); default 1"),
) -> None:
    """Run job workers only (no API): they take queued jobs from the shared database until stopped."""
    from fmops.jobs.supervisor import WorkerSupervisor
    from fmops.logs import configure_logging
    from fmops.plugins import load_modules

    s = load_settings({"workers": processes}) if processes is not None else settings()
    if s.workers < 1:
        raise UserError("--processes must be at least 1 (FMOPS_WORKERS=0 runs no worker)", param="processes")
    configure_logging(s.log_level, s.log_format)
    load_modules(s.plugins)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor = WorkerSupervisor(s)
    supervisor.start()
    log.info("fmops worker is up: %d job worker processes", s.workers)
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        # Running jobs are checkpointed and queued again, for this or another worker to resume.
        supervisor.stop(timeout=s.shutdown_grace_seconds)
        log.info("fmops worker stopped")
