"""A traced span as the application sees it, and which one is current.

The current span lives in a context variable of the SDK's own (not OpenTelemetry's global context),
so nesting follows the code across `await` and into threads started with a copied context
(`asyncio.to_thread`, `contextvars.copy_context().run`), and never mixes with the application's own
OpenTelemetry spans.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from fmops.sdk import tracing
from fmops.sdk.serialize import attribute_value, to_attribute

log = logging.getLogger("fmops.sdk")

# OpenInference span kinds (`openinference.span.kind`), which the server maps to its own kinds.
KINDS = {
    "chain": "CHAIN",
    "tool": "TOOL",
    "llm": "LLM",
    "retriever": "RETRIEVER",
    "retrieval": "RETRIEVER",
    "embedding": "EMBEDDING",
    "agent": "AGENT",
    "reranker": "RERANKER",
    "guardrail": "GUARDRAIL",
    "evaluator": "EVALUATOR",
}

_current: ContextVar[SpanHandle | None] = ContextVar("fmops_current_span", default=None)


def span_kind(kind: str) -> str:
    """The OpenInference kind for `kind` (any case); a ValueError names the accepted ones."""
    found = KINDS.get(kind.lower())
    if found is None:
        raise ValueError(f"unknown span kind {kind!r}; use one of {', '.join(sorted(KINDS))}")
    return found


class SpanHandle:
    """One span of the application's trace: set its input, output and attributes while it runs."""

    __slots__ = ("_output_set", "_span", "session_id", "user")

    def __init__(self, span: trace.Span, user: str | None, session_id: str | None) -> None:
        self._span = span
        self._output_set = False
        self.user = user
        self.session_id = session_id

    @property
    def trace_id(self) -> str:
        """32 hex digits, as fmops' API and `GET /api/traces/{trace_id}` use it."""
        return format(self._span.get_span_context().trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self._span.get_span_context().span_id, "016x")

    @property
    def otel_span(self) -> trace.Span:
        """The underlying OpenTelemetry span (e.g. to add events or links)."""
        return self._span

    def set_input(self, value: Any) -> None:
        text, mime = to_attribute(value, tracing.max_field_bytes())
        self._span.set_attributes({"input.value": text, "input.mime_type": mime})

    def set_output(self, value: Any) -> None:
        text, mime = to_attribute(value, tracing.max_field_bytes())
        self._span.set_attributes({"output.value": text, "output.mime_type": mime})
        self._output_set = True

    def set_attribute(self, key: str, value: Any) -> None:
        """Any value: strings, numbers, booleans and flat lists of one of them as they are, else JSON."""
        self._span.set_attribute(key, attribute_value(value))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def record_error(self, error: BaseException) -> None:
        """Mark the span failed with an `exception` event (type, message, stack trace)."""
        self._span.record_exception(error)
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        self._span.set_status(Status(StatusCode.ERROR, message))

    def __repr__(self) -> str:
        return f"<fmops span trace_id={self.trace_id} span_id={self.span_id}>"


def current_span() -> SpanHandle | None:
    """The innermost fmops span running in this context, if any."""
    return _current.get()


def start(
    name: str,
    kind: str,
    *,
    parent: SpanHandle | None,
    user: str | None = None,
    session_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> SpanHandle:
    """Start a span under `parent` (a new trace when None); user and session are inherited."""
    if parent is not None:
        context = trace.set_span_in_context(parent._span)
        user = user if user is not None else parent.user
        session_id = session_id if session_id is not None else parent.session_id
    else:
        context = Context()  # a root of our own, never a child of the application's OTel span
    first: dict[str, Any] = {"openinference.span.kind": kind}
    if user is not None:
        first["user.id"] = user
    if session_id is not None:
        first["session.id"] = session_id
    span = tracing.tracer().start_span(name, context=context, attributes=first)
    handle = SpanHandle(span, user, session_id)
    if attributes:
        handle.set_attributes(attributes)
    return handle


def activate(handle: SpanHandle) -> Token[SpanHandle | None]:
    return _current.set(handle)


def deactivate(token: Token[SpanHandle | None]) -> None:
    # Ended in another context than it started in (e.g. an async generator closed by the event
    # loop): that context's current span is not ours to restore.
    with contextlib.suppress(ValueError):
        _current.reset(token)


def finish(handle: SpanHandle, error: BaseException | None = None) -> None:
    """Record `error` (if any) and end the span; never raises into the application."""
    try:
        if error is not None:
            handle.record_error(error)
        handle._span.end()
    except Exception:
        log.exception("fmops could not end span")
