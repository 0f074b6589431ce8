"""OTLP export to a real collector over HTTP: batches, retries, bounded queue, flush on close, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from fmops.auth import Principal, Role
from fmops.gateway.spans import CallRecord
from fmops.store import Store
from fmops.tracing.otlp import OtlpExporter
from fmops.tracing.otlp.export import traces_url
from fmops.tracing.writer import TraceWriter
from support.databases import sqlite_url
from support.otlp import Collector, attributes_of, run_collector
from support.server import free_port

pytestmark = pytest.mark.anyio

PRINCIPAL = Principal(
    key_id="key-1",
    user_id="u1",
    user_name="alice",
    project_id="proj-1",
    project_name="default",
    role=Role.consumer,
)


def rows(count: int) -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        record = CallRecord(principal=PRINCIPAL, model=f"model-{i}", provider="openai")
        record.input_tokens = i
        made.append(record.row())
    return made


@pytest.fixture
def collector() -> Iterator[Collector]:
    with run_collector() as running:
        yield running


@pytest.fixture
async def idle_writer(tmp_path: Path) -> AsyncIterator[TraceWriter]:
    """A writer whose spans these tests hand to the exporter themselves (its subscriber API)."""
    store = Store(sqlite_url(tmp_path))
    yield TraceWriter(store)
    store.dispose()


async def started(exporter: OtlpExporter) -> OtlpExporter:
    await exporter.start()
    return exporter


async def test_spans_the_writer_commits_reach_the_collector(store: Store, collector: Collector) -> None:
    writer = TraceWriter(store, flush_seconds=0.01)
    exporter = await started(OtlpExporter(writer, collector.url, {"x-collector-token": "t0k"}, interval=60))
    writer.start()
    sent = rows(3)
    ids = [r["span_id"] for r in sent]
    writer.record_many(sent)
    await writer.flush()
    await exporter.flush()

    received = collector.spans()
    assert [span.span_id.hex() for _, span in received] == ids
    assert attributes_of(received[0][1])["gen_ai.request.model"] == "model-0"
    headers = collector.received[0].headers
    assert headers["x-collector-token"] == "t0k"
    assert (headers["Content-Type"], headers["Content-Encoding"]) == ("application/x-protobuf", "gzip")

    # Spans recorded again (a replayed OTLP batch) are not stored again, so not exported again.
    writer.record_many(_copies(sent))
    await writer.flush()
    await exporter.flush()
    assert len(collector.spans()) == 3
    await writer.close()
    await exporter.close()
    assert (exporter.exported, exporter.dropped) == (3, 0)


def _copies(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in sent]


async def test_a_collector_that_is_briefly_down_is_retried(
    idle_writer: TraceWriter, collector: Collector
) -> None:
    collector.script.extend([503, 429])
    exporter = await started(OtlpExporter(idle_writer, collector.url, interval=60, max_attempts=3))
    exporter.enqueue(rows(4))
    await exporter.flush()

    assert len(collector.spans()) == 4
    assert (exporter.exported, exporter.failed_requests, exporter.dropped) == (4, 2, 0)
    await exporter.close()


async def test_spans_are_dropped_and_counted_when_retries_run_out(
    idle_writer: TraceWriter, collector: Collector
) -> None:
    collector.script.extend([503, 503])
    exporter = await started(OtlpExporter(idle_writer, collector.url, interval=60, max_attempts=2))
    exporter.enqueue(rows(4))
    await exporter.flush()
    assert (exporter.exported, exporter.dropped, collector.attempts) == (0, 4, 2)

    exporter.enqueue(rows(2))  # the collector is back
    await exporter.flush()
    assert (exporter.exported, exporter.dropped) == (2, 4)
    await exporter.close()


async def test_refused_and_rejected_spans_are_counted_as_dropped(
    idle_writer: TraceWriter, collector: Collector
) -> None:
    collector.script.append(400)  # not worth retrying
    exporter = await started(OtlpExporter(idle_writer, collector.url, interval=60))
    exporter.enqueue(rows(3))
    await exporter.flush()
    assert (exporter.dropped, collector.attempts) == (3, 1)

    collector.reject = 1  # accepted, with one span rejected in partial_success
    exporter.enqueue(rows(3))
    await exporter.flush()
    assert (exporter.exported, exporter.dropped) == (2, 4)
    await exporter.close()


async def test_the_queue_is_bounded_and_enqueue_never_waits(idle_writer: TraceWriter) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    exporter = await started(OtlpExporter(idle_writer, nowhere, interval=60, max_queue=10, close_timeout=1))
    started_at = time.perf_counter()
    for _ in range(5):
        exporter.enqueue(rows(6))
    assert time.perf_counter() - started_at < 0.5
    assert (exporter.pending, exporter.dropped) == (10, 20)  # the oldest went first

    await exporter.close()  # one try each, within close_timeout, then counted
    assert (exporter.pending, exporter.dropped, exporter.exported) == (0, 30, 0)


async def test_close_sends_what_is_queued(idle_writer: TraceWriter, collector: Collector) -> None:
    exporter = await started(OtlpExporter(idle_writer, collector.url, interval=60, batch_size=2))
    exporter.enqueue(rows(5))
    await exporter.close()

    assert len(collector.spans()) == 5
    assert len(collector.received) == 3  # in batches of 2
    assert (exporter.exported, exporter.pending) == (5, 0)


async def test_close_does_not_wait_out_a_collector_that_keeps_failing(
    idle_writer: TraceWriter, collector: Collector
) -> None:
    collector.script.extend([503] * 100)
    exporter = await started(
        OtlpExporter(idle_writer, collector.url, interval=0.01, max_attempts=50, close_timeout=2)
    )
    exporter.enqueue(rows(3))
    while collector.attempts < 2:  # the batch is in its retries
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await exporter.close()

    assert time.monotonic() - began < 3
    assert (exporter.exported, exporter.dropped, exporter.pending) == (0, 3, 0)


async def test_counters_are_published_for_prometheus(idle_writer: TraceWriter, collector: Collector) -> None:
    exporter = await started(OtlpExporter(idle_writer, collector.url, interval=60))
    registry = CollectorRegistry()
    registry.register(exporter.collector())
    exporter.enqueue(rows(3))
    await exporter.flush()
    await exporter.close()

    text = generate_latest(registry).decode()
    assert "fmops_otlp_spans_exported_total 3.0" in text
    assert "fmops_otlp_spans_dropped_total 0.0" in text
    assert "fmops_otlp_export_queue_depth 0.0" in text


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://vendor.example/otlp/v1/traces?tenant=a", "https://vendor.example/otlp/v1/traces?tenant=a"),
    ],
)
def test_a_bare_collector_address_gets_the_otlp_traces_path(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url
