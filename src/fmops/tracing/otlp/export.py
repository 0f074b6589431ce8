"""OTLP export: every span fmops stores goes to a collector (`FMOPS_OTLP_ENDPOINT`), off the request path.

The trace writer hands each committed batch to `OtlpExporter.enqueue` (on the event loop: it only
appends to a bounded queue). A background task sends the queue in batches as OTLP/HTTP protobuf,
gzipped, with `FMOPS_OTLP_HEADERS`; encoding runs in a thread. A collector that is down or
answers 429/5xx is retried with exponential backoff (honouring Retry-After); while it is away the
queue fills up to `max_queue` spans, after which the oldest are dropped and counted, so memory
stays bounded and requests are never slowed. Spans the collector refuses outright (another 4xx,
or rejected in its partial_success) are counted as dropped too. On shutdown what is queued is
sent, within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fmops.tracing.otlp.encode import encode
from fmops.tracing.writer import TraceWriter

log = logging.getLogger(__name__)

# Statuses worth retrying (OTLP/HTTP's list): the collector is overloaded or briefly away.
RETRYABLE = frozenset({408, 429, 502, 503, 504})
MAX_BACKOFF = 30.0


def payload(rows: Sequence[dict[str, Any]]) -> tuple[bytes, int, int]:
    """(gzipped protobuf request, spans in it, rows that could not be encoded)."""
    request, skipped = encode(rows)
    data = request.SerializeToString()
    # Level 1: most of the size reduction (span attributes repeat a lot) for little CPU.
    return gzip.compress(data, compresslevel=1, mtime=0), len(rows) - skipped, skipped


class OtlpExporter:
    def __init__(
        self,
        tracer: TraceWriter,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        *,
        batch_size: int = 512,
        max_queue: int = 20_000,
        interval: float = 1.0,
        timeout: float = 10.0,
        max_attempts: int = 6,
        close_timeout: float = 5.0,
    ) -> None:
        self.tracer = tracer
        self.endpoint = traces_url(endpoint)
        self.headers = {
            **(headers or {}),
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
        }
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.interval = interval
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.close_timeout = close_timeout
        self._queue: deque[dict[str, Any]] = deque(maxlen=max_queue)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self.exported = 0  # spans the collector accepted
        self.dropped = 0  # spans that will never be exported: queue full, refused, retries exhausted
        self.failed_requests = 0  # export requests that failed (each retry counts)
        self._in_flight = 0  # spans of the batch being sent

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.tracer.subscribe(self.enqueue)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fmops-otlp-export")

    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        """Called by the trace writer on the event loop with each committed batch: never blocks."""
        if self._closing and self._task is None:
            self.dropped += len(rows)
            return
        overflow = len(self._queue) + len(rows) - self.max_queue
        if overflow > 0:
            self.dropped += overflow  # the deque's maxlen drops the oldest
        self._queue.extend(rows)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()
            while self._queue and not self._closing:
                batch = self._take()
                try:
                    await self._send(batch, self.max_attempts)
                except Exception:  # a bug in encoding must not stop every later export
                    self.dropped += len(batch)
                    log.exception("OTLP export failed; spans dropped", extra={"spans": len(batch)})

    def _take(self) -> list[dict[str, Any]]:
        return [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]

    async def _send(self, batch: list[dict[str, Any]], attempts: int) -> None:
        self._in_flight = len(batch)
        try:
            await self._deliver(batch, attempts)
        finally:
            self._in_flight = 0

    async def _deliver(self, batch: list[dict[str, Any]], attempts: int) -> None:
        data, count, skipped = await asyncio.to_thread(payload, batch)
        if skipped:
            self.dropped += skipped
            log.warning("spans not exportable (ids not hex) were skipped", extra={"spans": skipped})
        delay = 0.5
        error: str | None = None
        for attempt in range(1, attempts + 1):
            retry_after, error = await self._post(data, count)
            if error is None:
                return
            self.failed_requests += 1
            if attempt == attempts or self._stop.is_set():
                break
            jittered = delay * (1 + random.random())  # noqa: S311  (jitter, not a secret)
            wait = min(retry_after if retry_after is not None else jittered, MAX_BACKOFF)
            delay = min(delay * 2, MAX_BACKOFF)
            log.info(
                "OTLP export failed; retrying", extra={"error": error, "attempt": attempt, "wait_s": wait}
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)
            if self._stop.is_set():
                # Shutting down: hand the batch back, so the final flush gives it one more try.
                overflow = len(self._queue) + len(batch) - self.max_queue
                self.dropped += max(overflow, 0)  # a full deque drops from the other end
                self._queue.extendleft(reversed(batch))
                return
        self.dropped += count
        log.warning("OTLP export failed; spans dropped", extra={"spans": count, "error": error})

    async def _post(self, data: bytes, count: int) -> tuple[float | None, str | None]:
        """(Retry-After seconds, error) of one request; error None once delivered or refused for good."""
        assert self._session is not None
        try:
            async with self._session.post(self.endpoint, data=data, headers=self.headers) as response:
                body = await response.read()
                if response.status < 300:
                    self.exported += count - self._rejected(body, count)
                    return None, None
                if response.status in RETRYABLE:
                    return _retry_after(response.headers.get("Retry-After")), f"HTTP {response.status}"
                self.dropped += count
                log.warning(
                    "OTLP collector refused spans",
                    extra={
                        "status": response.status,
                        "spans": count,
                        "body": body[:300].decode("utf-8", "replace"),
                    },
                )
                return None, None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"

    def _rejected(self, body: bytes, count: int) -> int:
        """Spans the collector said it rejected (partial_success), counted as dropped."""
        try:
            rejected = ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans
        except DecodeError:
            return 0
        rejected = max(0, min(rejected, count))
        if rejected:
            self.dropped += rejected
            log.warning("OTLP collector rejected spans", extra={"spans": rejected})
        return rejected

    async def flush(self) -> None:
        """Send everything queued now (tests)."""
        while self._queue:
            await self._send(self._take(), self.max_attempts)

    async def close(self) -> None:
        """Stop, then send what is queued: one try per batch, within `close_timeout`."""
        self._closing = True
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=self.close_timeout)
            if not done:  # a request still hanging on the collector: its spans are lost
                self._task.cancel()
                self.dropped += self._in_flight
            self._task = None
        deadline = time.monotonic() + self.close_timeout
        try:
            while self._queue and time.monotonic() < deadline:
                await asyncio.wait_for(self._send(self._take(), 1), max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            pass
        if self._queue:
            self.dropped += len(self._queue)
            log.error("spans not exported at shutdown", extra={"spans": len(self._queue)})
            self._queue.clear()
        if self._session is not None:
            await self._session.close()

    def collector(self) -> Collector:
        """The exporter's counters, for /metrics."""
        return _ExportCollector(self)


class _ExportCollector(Collector):
    def __init__(self, exporter: OtlpExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        e = self.exporter
        yield CounterMetricFamily(
            "fmops_otlp_spans_exported", "Spans exported to the OTLP collector", value=e.exported
        )
        yield CounterMetricFamily(
            "fmops_otlp_spans_dropped",
            "Spans never exported: export queue full, refused by the collector, or retries exhausted",
            value=e.dropped,
        )
        yield CounterMetricFamily(
            "fmops_otlp_export_failures",
            "OTLP export requests that failed (each retry counts)",
            value=e.failed_requests,
        )
        yield GaugeMetricFamily(
            "fmops_otlp_export_queue_depth", "Spans waiting to be exported", value=e.pending
        )


def traces_url(endpoint: str) -> str:
    """The collector's trace URL: a bare `http://collector:4318` gets OTLP's `/v1/traces` path."""
    parts = urlsplit(endpoint)
    return urlunsplit(parts._replace(path="/v1/traces")) if parts.path in ("", "/") else endpoint


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
