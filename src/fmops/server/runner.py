"""`fmops up`: migrate, bootstrap the admin key, start the job workers and serve until stopped."""

from __future__ import annotations

import gc
import logging
import signal
import socket
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from fmops.auth import AuthService
from fmops.errors import ConfigError
from fmops.jobs.supervisor import WorkerSupervisor
from fmops.logs import configure_logging
from fmops.platform import Platform
from fmops.plugins import load_modules
from fmops.server.app import create_app
from fmops.server.fastpath import front
from fmops.settings import Settings
from fmops.store import Store, upgrade

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> tuple[Store, str | None]:
    """Create the home folder, apply migrations, and create the first admin key if there is none."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url, durable=settings.trace_durability == "strict")
    before, after = upgrade(store)
    if before != after:
        log.info("database migrated", extra={"from": before, "to": after})
    key = AuthService(store).bootstrap(settings.admin_key_path)
    return store, key


def ready_line(settings: Settings) -> str:
    """One line for the person who started the server: the URL to open and where the admin key is."""
    # A wildcard bind address is not an address to open: this machine answers on loopback too.
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(settings.host, settings.host)  # noqa: S104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    key = settings.admin_key_path
    where = (
        f"the admin key is in {key}"
        if key.exists()
        else f"the admin key written to {key} at first start is gone: ask an admin for a key"
    )
    return f"fmops is up: open http://{host}:{settings.port} ({where})"


def _exit_after_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the previous handler.

    With the default handler that kills the process before the job workers are stopped and with a
    non-zero status; exiting normally instead lets `serve` stop the workers and return 0.
    """
    raise SystemExit(0)


class Server(uvicorn.Server):
    """uvicorn's server, saying `ready` (if any) once it listens, its start-up heap frozen.

    Said before `run`, the line could reach a script that then sends SIGTERM before uvicorn has
    taken over the signal, i.e. while the server is still being set up."""

    def __init__(
        self, config: uvicorn.Config, ready: str | None = None, extra: dict[str, int] | None = None
    ) -> None:
        super().__init__(config)
        self._ready, self._extra = ready, extra or {}

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        freeze_start_up_heap()
        if self._ready:
            log.info(self._ready, extra=self._extra)


# Container allocations between young collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def freeze_start_up_heap() -> None:
    """Move what start-up built (routes, schemas, ORM mappers, protobuf descriptors: ~280,000
    objects, none of them garbage) out of the cyclic collector's sight, and collect young objects
    less often.

    Unfrozen, every full collection walked the start-up heap (the collector was ~4% of a saturated
    span ingest's samples in py-spy). And under load, queued spans and requests in flight outlive a
    young collection, so even frozen, at CPython's thresholds the collector ran ~1,000 times in a
    20 s span ingest, walking them again each time: 1.05 s of CPU, ~7 µs of a span's ~120. With
    young collections every 20,000 allocations it used 0.34 s: most objects are freed by their
    reference count before a collection comes. Cyclic garbage waits a little longer (at most
    ~20,000 objects). Only the server process does this: a test process builds many apps, and
    freezing would keep their garbage for good."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def asgi_app(settings: Settings, platform: Platform) -> ASGIApp:
    """The application a server process serves; the gateway's hot routes are answered in front of it
    (server/fastpath.py)."""
    app = create_app(settings, platform)
    return front(app, platform, settings.max_body_bytes) if settings.gateway_fast_path else app


def uvicorn_config(settings: Settings, asgi: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port,
        log_config=None,  # our handler, already configured, formats and redacts uvicorn's lines
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        server_header=False,
        proxy_headers=False,
    )


def check_gateway_workers(settings: Settings) -> None:
    """Several processes keep rate limits, budgets and the cache right only when they share them."""
    if settings.gateway_workers > 1 and not settings.redis_url:
        raise ConfigError(
            f"--gateway-workers {settings.gateway_workers} needs shared counters: set FMOPS_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0). Without Redis each process would keep its own rate "
            "limits, budgets and cache, and a key could use N times its limits."
        )


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    check_gateway_workers(settings)
    load_modules(settings.plugins)
    # Once, before any server process starts: migrations and the first admin key.
    store, admin_key = prepare(settings)
    if admin_key:
        log.warning(
            "first start: an admin key was created and written to %s (mode 0600); "
            "use it as `Authorization: Bearer <key>`",
            settings.admin_key_path,
        )
    supervisor = WorkerSupervisor(settings)
    extra = {"workers": settings.workers, "gateway_workers": settings.gateway_workers}
    if settings.gateway_workers > 1:
        from fmops.server.processes import GatewayProcesses

        store.dispose()  # each server process opens its own connections
        supervisor.start()
        log.info(ready_line(settings), extra=extra)
        try:
            status = GatewayProcesses(settings).run()
        finally:
            supervisor.stop(timeout=settings.shutdown_grace_seconds)
            log.info("fmops stopped")
        if status:
            raise SystemExit(status)
        return
    platform = Platform.build(settings, store)
    asgi = asgi_app(settings, platform)
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    supervisor.start()
    server = Server(uvicorn_config(settings, asgi), ready_line(settings), extra)
    try:
        server.run()
    finally:
        supervisor.stop(timeout=settings.shutdown_grace_seconds)
        log.info("fmops stopped")
