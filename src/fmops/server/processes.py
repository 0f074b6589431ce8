"""`fmops up --gateway-workers N`: N server processes answering on one port.

The parent binds the listening socket once and hands it to N processes (what uvicorn's own
`--workers` does, and gunicorn's pre-fork model); the kernel spreads the connections among them.
The processes are forked from multiprocessing's fork server, a clean single-threaded process that
imported the server's modules once: N processes cost one import, not N, and none inherits the
parent's threads or connections. Each builds its own platform on the already migrated database
and serves with uvicorn.
They share state through what every replica shares: the database, and Redis for rate limits,
budgets and the response cache (which is why more than one process needs FMOPS_REDIS_URL).

The parent only supervises: SIGTERM or SIGINT (Ctrl-C) stops every process gracefully (each
finishes its requests and flushes its spans), a process that dies is started again, and one that
keeps dying (a broken start-up) stops them all with an error instead of restarting forever.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections import deque
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from fmops.settings import Settings

log = logging.getLogger(__name__)

# A process that dies this many times within CRASH_WINDOW_S is broken, not unlucky: stop everything.
MAX_CRASHES = 5
CRASH_WINDOW_S = 60.0
_POLL_S = 0.5


def _exit_after_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal it stopped on once it has shut down; exit 0 instead of dying by it."""
    raise SystemExit(0)


def serve_worker(settings: Settings, sock: socket.socket, index: int) -> None:
    """One server process: the platform on the migrated database, served on the inherited socket."""
    from fmops.logs import configure_logging
    from fmops.platform import Platform
    from fmops.plugins import load_modules
    from fmops.server.runner import Server, asgi_app, uvicorn_config
    from fmops.store import Store

    configure_logging(settings.log_level, settings.log_format)
    load_modules(settings.plugins)
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    signal.signal(signal.SIGINT, _exit_after_shutdown)
    store = Store(settings.database_url, durable=settings.trace_durability == "strict")
    platform = Platform.build(settings, store)
    server = Server(uvicorn_config(settings, asgi_app(settings, platform)))
    log.info("gateway process started", extra={"index": index, "pid": os.getpid()})
    server.run(sockets=[sock])


class GatewayProcesses:
    """Start, watch and stop `settings.gateway_workers` server processes on one listening socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.gateway_workers
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["fmops.server.runner"])
        self._stop = threading.Event()
        self._crashes: deque[float] = deque()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _start(self, sock: socket.socket, index: int) -> BaseProcess:
        proc = self._context.Process(
            target=serve_worker, args=(self.settings, sock, index), name=f"fmops-gateway-{index}"
        )
        proc.start()
        return proc

    def _bind(self) -> socket.socket:
        # uvicorn's own binding (address family, SO_REUSEADDR), as `uvicorn --workers` does.
        config = uvicorn.Config(app="", host=self.settings.host, port=self.settings.port, log_config=None)
        sock = config.bind_socket()
        sock.set_inheritable(True)
        return sock

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (returns 0) or until a process keeps crashing (returns 1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        sock = self._bind()
        procs = [self._start(sock, i) for i in range(self.count)]
        status = 0
        try:
            while not self._stop.wait(_POLL_S):
                for i, proc in enumerate(procs):
                    if proc.is_alive() or self._stop.is_set():
                        continue
                    now = time.monotonic()
                    self._crashes.append(now)
                    while self._crashes and self._crashes[0] < now - CRASH_WINDOW_S:
                        self._crashes.popleft()
                    if len(self._crashes) >= MAX_CRASHES:
                        log.error(
                            "gateway processes keep exiting (%d times in %.0f s): stopping fmops; "
                            "the log lines above say why",
                            len(self._crashes),
                            CRASH_WINDOW_S,
                        )
                        self._stop.set()
                        status = 1
                        break
                    log.warning(
                        "gateway process exited: starting it again",
                        extra={"index": i, "pid": proc.pid, "exitcode": proc.exitcode},
                    )
                    procs[i] = self._start(sock, i)
        finally:
            self._stop_all(procs)
            sock.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _stop_all(self, procs: list[BaseProcess]) -> None:
        """SIGTERM to each (a graceful uvicorn shutdown), then wait; kill what outlives the grace."""
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 5
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                log.warning("gateway process did not stop in time: killed", extra={"pid": proc.pid})
                proc.kill()
                proc.join()
