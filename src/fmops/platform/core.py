"""The services one fmops process runs, built once from settings: the API, web UI and CLI share them.

This is the composition root: the interfaces (`fmops.cli`, `fmops.server`, `fmops.web`) depend on it,
and it depends only on services and adapters, so the interfaces never import one another for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from fmops.auth import AuthService
from fmops.auth.sessions import SessionService
from fmops.catalog import Catalog
from fmops.counters import Counters, make_counters
from fmops.gateway.service import Gateway
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.jobs import JobService
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store
from fmops.tracing import TraceWriter

if TYPE_CHECKING:
    from fmops.datasets import DatasetService
    from fmops.guardrails.service import GuardrailService
    from fmops.tracing.metrics import Metrics

log = logging.getLogger(__name__)
ShutdownHook = Callable[[], Awaitable[None]]


class Service(Protocol):
    """Background work that lives as long as the server: started on its loop, closed when it stops."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


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
    metrics: Metrics | None  # None in a platform built for a CLI command (serving=False)
    # Background services (exporters, evaluators, alert and retention loops), started with the
    # server and closed after the trace writer has flushed, in reverse order.
    services: list[Service] = field(default_factory=list)
    # Background writers register here; they are flushed when the server stops.
    shutdown_hooks: list[ShutdownHook] = field(default_factory=list)
    web_sessions: SessionService = field(init=False)

    def __post_init__(self) -> None:
        self.web_sessions = SessionService(self.store, self.auth, hours=self.settings.web_session_hours)

    @cached_property
    def datasets(self) -> DatasetService:
        """Datasets in the store and the artifact store (`FMOPS_ARTIFACT_URL`): one for every caller.

        Built on first use, so a process that never touches datasets does not load pyarrow."""
        from fmops.artifacts import ArtifactStore
        from fmops.datasets import DatasetService

        return DatasetService(self.store, ArtifactStore.from_settings(self.settings))

    @cached_property
    def guardrails(self) -> GuardrailService:
        """Guardrail policies: managed by the API, the CLI and the console, served to calls from one
        cache per registry generation: the gateway's, so a process keeps one cache and one set of
        generation reads (built on first use otherwise: it loads the guardrail plugins)."""
        from fmops.guardrails.service import GuardrailService

        served = getattr(self.gateway, "guardrails", None)
        return served if isinstance(served, GuardrailService) else GuardrailService(self.store, self.catalog)

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None, *, serving: bool = True) -> Platform:
        """The services of a server (`serving`), or of a CLI command: then neither the Prometheus
        metrics nor the background services are built (or imported: a command's start-up time and
        memory are its user's wait and a CI job's budget)."""
        store = store or Store(settings.database_url)
        catalog = Catalog(store, settings, SecretBox.from_settings(settings))
        counters = make_counters(settings)
        metrics: Metrics | None = None
        if serving:
            from fmops.tracing.metrics import Metrics

            metrics = Metrics()
        tracer = build_tracer(settings, store, on_record=metrics.observe if metrics else None)
        if metrics is not None:
            metrics.watch(tracer)
        platform = cls(
            settings=settings,
            store=store,
            auth=AuthService(store, cache_seconds=settings.key_cache_seconds),
            jobs=JobService(store, max_attempts=settings.job_max_attempts),
            catalog=catalog,
            tracer=tracer,
            gateway=build_gateway(settings, store, catalog, tracer, counters),
            counters=counters,
            metrics=metrics,
        )
        if metrics is not None:
            platform._add_services(metrics)
        return platform

    def _add_services(self, metrics: Metrics) -> None:
        from fmops.alerts import AlertService
        from fmops.alerts.evaluate import AlertEvaluator
        from fmops.alerts.loop import AlertLoop
        from fmops.evals.cache import CachePruner
        from fmops.evaluators.online import OnlineEvaluators
        from fmops.stats.rollup import RollupLoop
        from fmops.tracing.retention import RetentionScheduler
        from fmops.tracing.search_index import SearchIndexer

        settings, store, tracer = self.settings, self.store, self.tracer
        alerts = AlertService(store, settings)
        self.services.append(AlertLoop(AlertEvaluator(store, alerts), settings.alert_interval_seconds))
        self.services.append(
            RetentionScheduler(
                store,
                interval_seconds=settings.retention_interval_seconds,
                default_days=settings.trace_retention_days,
            )
        )
        self.services.append(RollupLoop(store, settings.stats_rollup_interval_seconds))  # stats roll-ups
        self.services.append(
            CachePruner(
                store,
                interval_seconds=settings.eval_cache_prune_interval_seconds,
                days=settings.eval_cache_days,
                max_entries=settings.eval_cache_max_entries,
            )
        )
        if store.dialect == "sqlite":  # the free-text search's index, built off the write path
            self.services.append(SearchIndexer(store))
        from fmops.gateway.warm import ProviderWarmup

        self.services.append(ProviderWarmup(store, self.catalog, self.gateway))  # a managed vLLM, say
        evaluators = OnlineEvaluators(store, self.jobs, tracer, queue_size=settings.evaluator_queue)
        metrics.registry.register(evaluators.collector())
        self.services.append(evaluators)
        if settings.otlp_endpoint:
            from fmops.tracing.otlp import OtlpExporter  # aiohttp and protobuf: only when exporting

            exporter = OtlpExporter(
                tracer, settings.otlp_endpoint, settings.otlp_headers, max_queue=settings.trace_memory_spans
            )
            metrics.registry.register(exporter.collector())
            self.services.append(exporter)

    async def start(self) -> None:
        """Start background work that needs the server's event loop."""
        self.tracer.start()
        for service in self.services:
            await service.start()

    async def shutdown(self) -> None:
        # Order matters: stop calling models, then flush what they recorded, then close the store.
        await self.gateway.close()
        await self.tracer.close()
        for service in reversed(self.services):
            try:
                await service.close()
            except Exception:
                log.exception("background service failed to close", extra={"service": type(service).__name__})
        await self.counters.close()
        if "guardrails" in self.__dict__:  # built: close its generation reads' connections
            self.guardrails.close()
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.dispose()
