"""Starts the local worker processes for `fmops up`, restarts any that die, stops them on shutdown."""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from multiprocessing.process import BaseProcess
from typing import Any

from fmops.jobs.worker import worker_main
from fmops.settings import Settings

log = logging.getLogger(__name__)


class WorkerSupervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = mp.get_context("spawn")  # a clean interpreter: no inherited threads, locks or sockets
        self._stop = self._ctx.Event()
        self._procs: list[BaseProcess] = []
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    def _spawn(self, index: int) -> BaseProcess:
        data: dict[str, Any] = self.settings.model_dump(mode="json")
        proc = self._ctx.Process(target=worker_main, args=(data, self._stop), name=f"fmops-worker-{index}")
        proc.start()
        return proc

    def start(self) -> None:
        self._procs = [self._spawn(i) for i in range(self.settings.workers)]
        if self._procs:
            self._watcher = threading.Thread(target=self._watch, name="fmops-worker-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._watch_stop.wait(1.0):
            for i, proc in enumerate(self._procs):
                if not proc.is_alive() and not self._stop.is_set():
                    log.warning("job worker exited; starting a new one", extra={"exitcode": proc.exitcode})
                    self.restarts += 1
                    self._procs[i] = self._spawn(i)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def stop(self, timeout: float) -> None:
        """Ask workers to stop (running jobs are checkpointed and queued again), then wait."""
        self._watch_stop.set()
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=timeout)
            if proc.is_alive():
                log.warning("job worker did not stop in time; terminating", extra={"pid": proc.pid})
                proc.terminate()
                proc.join(timeout=5)
