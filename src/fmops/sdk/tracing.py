"""Where traced spans go: a private OpenTelemetry TracerProvider, one per process.

The provider is fmops' own: the global OpenTelemetry provider and context are never touched, so an
application with its own OpenTelemetry set-up keeps it. Spans are sent in background batches
(BatchSpanProcessor) by the OTLP/HTTP exporter to `<base_url>/v1/traces` with the API key, and the
provider is shut down, which sends what is still queued, when the interpreter exits.

Where they go is decided on the first span, in this order: `fmops.configure(...)`; else the first
`fmops.Client` made with an API key; else `FMOPS_BASE_URL` / `FMOPS_API_KEY`. Without an API key,
tracing still runs (spans get ids, the traceparent header is still sent) but nothing is exported,
and one warning says so.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

log = logging.getLogger("fmops.sdk")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_MAX_FIELD_BYTES = 64 * 1024
# Batches small enough that even spans with inputs and outputs at the limit stay far below the
# server's request body limit (16 MiB by default); sent every second so traces show up promptly.
_BATCH_SPANS = 64
_BATCH_DELAY_MS = 1_000
_SCOPE = "fmops.sdk"


@dataclass(frozen=True)
class Destination:
    """An fmops server and the key to use there."""

    base_url: str
    api_key: str | None

    @classmethod
    def resolve(cls, base_url: str | None = None, api_key: str | None = None) -> Destination:
        """Explicit values, else FMOPS_BASE_URL / FMOPS_API_KEY, else the local default server."""
        url = base_url or os.environ.get("FMOPS_BASE_URL") or DEFAULT_BASE_URL
        return cls(url.rstrip("/"), api_key or os.environ.get("FMOPS_API_KEY") or None)


@dataclass(frozen=True)
class _Plan:
    destination: Destination | None  # None: from the environment, read when the first span starts
    enabled: bool = True
    service_name: str | None = None
    exporter: SpanExporter | None = None
    explicit: bool = False  # set by configure(); a Client never overrides it


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plan = _Plan(destination=None)
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.exporting = False
        self.max_field_bytes = DEFAULT_MAX_FIELD_BYTES


_state = _State()


def configure(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    enabled: bool = True,
    service_name: str | None = None,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    exporter: SpanExporter | None = None,
) -> None:
    """Say where this process's spans go; spans already queued are sent to the previous place first.

    `base_url` and `api_key` default to FMOPS_BASE_URL and FMOPS_API_KEY. `enabled=False` keeps the
    decorators working but sends nothing. `max_field_bytes` bounds each span's input and output.
    `exporter` replaces the OTLP exporter (e.g. an in-memory one in tests, or a collector's).
    """
    if max_field_bytes < 64:
        raise ValueError("max_field_bytes must be at least 64")
    plan = _Plan(
        destination=Destination.resolve(base_url, api_key),
        enabled=enabled,
        service_name=service_name,
        exporter=exporter,
        explicit=True,
    )
    with _state.lock:
        _close_locked()
        _state.plan = plan
        _state.max_field_bytes = max_field_bytes


def adopt(destination: Destination) -> None:
    """A Client's server and key become the spans' destination, unless configure() chose one or spans
    are already being sent somewhere (switching then would split traces between servers)."""
    if destination.api_key is None:
        return
    with _state.lock:
        if _state.plan.explicit or _state.exporting or _state.plan.destination is not None:
            return
        _close_locked()
        _state.plan = _Plan(destination=destination)


def tracer() -> Tracer:
    """The SDK's tracer, built on first use from the plan."""
    current = _state.tracer
    if current is not None:
        return current
    with _state.lock:
        if _state.tracer is None:
            _build_locked()
        assert _state.tracer is not None
        return _state.tracer


def max_field_bytes() -> int:
    return _state.max_field_bytes


def flush(timeout_s: float = 30.0) -> bool:
    """Send every span ended so far; True when all were handed to the exporter within the timeout."""
    provider = _state.provider
    if provider is None:
        return True
    return provider.force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    """Send what is queued and forget the configuration (the next span starts afresh, from the
    environment). Called at exit automatically; useful in tests and before forking."""
    with _state.lock:
        _close_locked()
        _state.plan = _Plan(destination=None)
        _state.max_field_bytes = DEFAULT_MAX_FIELD_BYTES


def _close_locked() -> None:
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.provider = None
    _state.tracer = None
    _state.exporting = False


def _build_locked() -> None:
    plan = _state.plan
    destination = plan.destination or Destination.resolve()
    attributes = {SERVICE_NAME: plan.service_name} if plan.service_name else {}
    # shutdown_on_exit (the default) registers provider.shutdown() with atexit: what is still
    # queued when the program ends is sent, without the application calling flush().
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=True)
    exporter = plan.exporter
    if plan.enabled and exporter is None:
        if destination.api_key is None:
            log.warning(
                "fmops tracing sends nothing: no API key. Set FMOPS_API_KEY, pass api_key to "
                "fmops.Client(...) or call fmops.configure(api_key=...)."
            )
        else:
            exporter = _otlp_exporter(destination)
    if plan.enabled and exporter is not None:
        processor = BatchSpanProcessor(
            exporter, max_export_batch_size=_BATCH_SPANS, schedule_delay_millis=_BATCH_DELAY_MS
        )
        provider.add_span_processor(processor)
        _state.exporting = True
    _state.provider = provider
    _state.tracer = provider.get_tracer(_SCOPE)


def _otlp_exporter(destination: Destination) -> SpanExporter:
    # Imported here: the exporter pulls in protobuf and requests, which tracing-off code never needs.
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=destination.base_url + "/v1/traces",
        headers={"Authorization": f"Bearer {destination.api_key}"},
        compression=Compression.Gzip,
        timeout=10,
    )
