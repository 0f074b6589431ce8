"""The gateway and the trace writer it records to, built from settings.

One recipe for every process that calls models: the server's platform (`fmops.platform`) and a job
worker's judge runtime (`fmops.evaluators.judge_runtime`) build them the same way.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from fmops.catalog import Catalog
from fmops.counters import Counters
from fmops.endpoints.resolver import EndpointResolver
from fmops.fewshot.retrieval import Retriever
from fmops.gateway.cache import ResponseCache
from fmops.gateway.limits import Limits
from fmops.gateway.routing import CircuitBreaker
from fmops.gateway.service import Gateway
from fmops.gateway.spend import record_spend
from fmops.guardrails.service import GuardrailService
from fmops.prompts.service import PromptService
from fmops.settings import Settings
from fmops.stats.rollup import mark_dirty
from fmops.store import Store
from fmops.tracing import TraceWriter
from fmops.tracing.writer import FLUSH_SECONDS, RecordHook

if TYPE_CHECKING:
    from fmops.artifacts import ArtifactStore


def build_tracer(
    settings: Settings,
    store: Store,
    *,
    on_record: RecordHook | None = None,
    flush_seconds: float = FLUSH_SECONDS,
) -> TraceWriter:
    """The trace writer: spend is counted per batch and stored hours are marked for the stats roll-ups.
    `flush_seconds`: how long a span may wait for its batch (default: the writer's ~50 ms)."""
    return TraceWriter(
        store,
        max_memory=settings.trace_memory_spans,
        spool_dir=settings.home / "spool",
        spool_bytes=settings.trace_spool_bytes,
        on_batch=record_spend,
        on_record=on_record,
        on_stored=mark_dirty,
        flush_seconds=flush_seconds,
    )


def build_gateway(
    settings: Settings, store: Store, catalog: Catalog, tracer: TraceWriter, counters: Counters
) -> Gateway:
    return Gateway(
        catalog,
        tracer,
        limits=Limits(counters, store),
        cache=ResponseCache(counters),
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds),
        strict=settings.trace_durability == "strict",
        tracing=settings.tracing,
        # An endpoint's few-shot examples (fmops.fewshot): indexes held in this process's memory.
        endpoints=EndpointResolver(
            store,
            PromptService(store, catalog),
            fewshot=Retriever(store, partial(_artifact_store, settings)),
        ),
        # Every call's guardrail policies, in every process that calls models (server, eval jobs,
        # judge workers): one behaviour on every path. Closed with the gateway.
        guardrails=GuardrailService(store, catalog),
    )


def _artifact_store(settings: Settings) -> ArtifactStore:
    from fmops.artifacts import ArtifactStore  # fsspec: only once an endpoint uses few-shot

    return ArtifactStore.from_settings(settings)
