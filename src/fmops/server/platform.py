"""The services one fmops process runs, built once from settings and shared by the API and the CLI."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.counters import Counters, make_counters
from fmops.gateway.cache import ResponseCache
from fmops.gateway.limits import Limits
from fmops.gateway.routing import CircuitBreaker
from fmops.gateway.service import Gateway
from fmops.gateway.spend import record_spend
from fmops.jobs import JobService
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store
from fmops.tracing import TraceWriter
from fmops.tracing.metrics import Metrics

log = logging.getLogger(__name__)
ShutdownHook = Callable[[], Awaitable[None]]


@dataclass
class Platform:
    settings: Settings
    store: Store
    auth: AuthService
    jobs: JobService
    catalog: Catalog
    tracer: TraceWriter
    gateway: Gateway
    counters: Counters
    metrics: Metrics
    # Background writers register here; they are flushed when the server stops.
    shutdown_hooks: list[ShutdownHook] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None) -> Platform:
        store = store or Store(settings.database_url)
        catalog = Catalog(store, settings, SecretBox.from_settings(settings))
        counters = make_counters(settings)
        metrics = Metrics()
        tracer = TraceWriter(store, on_batch=record_spend, on_record=metrics.observe)
        metrics.watch(tracer)
        return cls(
            settings=settings,
            store=store,
            auth=AuthService(store, cache_seconds=settings.key_cache_seconds),
            jobs=JobService(store, max_attempts=settings.job_max_attempts),
            catalog=catalog,
            tracer=tracer,
            gateway=Gateway(
                catalog,
                tracer,
                limits=Limits(counters, store),
                cache=ResponseCache(counters),
                breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds),
            ),
            counters=counters,
            metrics=metrics,
        )

    async def start(self) -> None:
        """Start background work that needs the server's event loop."""
        self.tracer.start()

    async def shutdown(self) -> None:
        # Order matters: stop calling models, then flush what they recorded, then close the store.
        await self.gateway.close()
        await self.tracer.close()
        await self.counters.close()
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.dispose()
