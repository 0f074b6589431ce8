"""Prometheus metrics of the gateway's calls, fed by the trace writer and served at `GET /metrics`.

Every span the gateway records passes through `Metrics.observe` (the writer's `on_record` hook), so
metrics and traces always count the same calls. Each app gets its own `CollectorRegistry`, so several
apps in one process (tests) never clash. The writer's queue depth and its written/dropped counts are
read at scrape time rather than updated per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fmops.tracing.writer import TraceWriter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Model calls take from tens of milliseconds to minutes.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
# The model label is what the caller asked for, unknown names included: past this many distinct
# values new ones are counted as "other", so a client cannot grow the series without bound.
MAX_MODELS = 500
OTHER = "other"


@dataclass(slots=True)
class _ModelSeries:
    """The labelled children of one model, looked up once: `labels()` costs more than `inc()`."""

    ok: Any
    error: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any
    latency: Any
    ttft: Any


class _WriterCollector(Collector):
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "fmops_trace_queue_depth", "Spans waiting to be written", value=self.writer.pending
        )
        yield CounterMetricFamily(
            "fmops_spans_written", "Spans written to the store", value=self.writer.written
        )
        yield CounterMetricFamily(
            "fmops_spans_dropped", "Spans lost: memory and disk spool full", value=self.writer.dropped
        )
        yield GaugeMetricFamily(
            "fmops_trace_spooled",
            "Spans waiting on disk for the database to return",
            value=self.writer.spooled,
        )
        yield CounterMetricFamily(
            "fmops_spans_replayed",
            "Spans received again and ignored (already stored)",
            value=self.writer.replayed,
        )
        yield CounterMetricFamily(
            "fmops_spans_rejected", "Spans the database refused", value=self.writer.rejected
        )
        yield GaugeMetricFamily(
            "fmops_trace_store_up",
            "1 when the last trace write reached the database",
            value=int(self.writer.healthy),
        )


class _RuntimeCollector(Collector):
    """Tasks alive on the server's event loop: a number that keeps growing is a leak (each request,
    stream and background job is one task while it runs)."""

    def collect(self) -> Iterator[Metric]:
        try:
            tasks = len(asyncio.all_tasks())  # scrapes run on the loop (an async route)
        except RuntimeError:  # no loop in this thread
            return
        yield GaugeMetricFamily("fmops_asyncio_tasks", "Tasks alive on the event loop", value=tasks)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        # process_open_fds, process_resident_memory_bytes…: leaks and memory bounds, seen from outside.
        ProcessCollector(registry=r)
        r.register(_RuntimeCollector())
        self.requests = Counter("fmops_requests", "Model calls", ["model", "status"], registry=r)
        self.tokens = Counter("fmops_tokens", "Tokens", ["model", "direction"], registry=r)
        self.cost = Counter("fmops_cost", "Cost, in the currency of the model prices", ["model"], registry=r)
        self.latency = Histogram(
            "fmops_request_latency_seconds", "Call latency", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.ttft = Histogram(
            "fmops_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._series: dict[str, _ModelSeries] = {}

    def watch(self, writer: TraceWriter) -> None:
        """Publish the writer's queue depth and written/dropped counts."""
        self.registry.register(_WriterCollector(writer))

    def observe(self, row: dict[str, Any]) -> None:
        """Count one recorded call (a span row as the gateway writes it)."""
        model = row.get("model") or OTHER
        series = self._series.get(model) or self._add(model)
        (series.error if row.get("status") == "error" else series.ok).inc()
        if input_tokens := row.get("input_tokens"):
            series.input_tokens.inc(input_tokens)
        if output_tokens := row.get("output_tokens"):
            series.output_tokens.inc(output_tokens)
        if cost := row.get("cost"):
            series.cost.inc(cost)
        latency_ms = row.get("latency_ms")
        if latency_ms is not None:
            series.latency.observe(latency_ms / 1000)
        ttft_ms = row.get("ttft_ms")
        if ttft_ms is not None:
            series.ttft.observe(ttft_ms / 1000)

    def _add(self, model: str) -> _ModelSeries:
        if len(self._series) >= MAX_MODELS:
            model = OTHER
            if model in self._series:
                return self._series[model]
        series = _ModelSeries(
            ok=self.requests.labels(model, "ok"),
            error=self.requests.labels(model, "error"),
            input_tokens=self.tokens.labels(model, "input"),
            output_tokens=self.tokens.labels(model, "output"),
            cost=self.cost.labels(model),
            latency=self.latency.labels(model),
            ttft=self.ttft.labels(model),
        )
        self._series[model] = series
        return series

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
