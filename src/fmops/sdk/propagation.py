"""The W3C `traceparent` header of the current fmops span, added to outgoing HTTP requests.

The gateway reads it and records its own span of the call as a child of the application's span,
so a trace shows the application's steps and the model calls they made as one tree.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from fmops.sdk.handle import current_span

_PROPAGATOR = TraceContextTextMapPropagator()


class Outgoing(Protocol):
    """A request about to be sent: httpx's, or that of the HTTP library the OpenAI SDK uses."""

    @property
    def headers(self) -> MutableMapping[str, str]: ...


def inject_traceparent(request: Outgoing) -> None:
    """httpx request hook: set `traceparent` (and `tracestate`) when an fmops span is current."""
    handle = current_span()
    if handle is not None:
        _PROPAGATOR.inject(request.headers, context=trace.set_span_in_context(handle.otel_span))


async def ainject_traceparent(request: Outgoing) -> None:
    """The same hook for async clients, whose hooks are awaited."""
    inject_traceparent(request)
