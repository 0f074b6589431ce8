"""Bodies of the traces routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fmops.server.schemas.base import Output


class SpanSummary(Output):
    """A span as search lists it; `input` and `output` only when asked for with `include_io=true`."""

    span_id: str
    trace_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_time: datetime
    end_time: datetime | None
    status: str
    status_message: str | None
    model: str | None
    provider: str | None
    response_model: str | None
    key_id: str | None
    user: str | None
    session_id: str | None
    endpoint: str | None
    prompt_name: str | None
    prompt_version: int | None
    variant: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    latency_ms: float | None
    ttft_ms: float | None
    cache_hit: bool
    # Sorted; set with `metadata.tags` on a call, or `fmops.tags` over OTLP.
    tags: list[str] = Field(default_factory=list)
    input: Any = None
    output: Any = None


class SpanTreeNode(SpanSummary):
    """A span of a trace, with its full input, output and attributes, and its child spans."""

    attributes: dict[str, Any]
    children: list[SpanTreeNode]


class TracePublic(Output):
    trace_id: str
    spans: list[SpanTreeNode]  # the root spans, children nested, siblings in start order
