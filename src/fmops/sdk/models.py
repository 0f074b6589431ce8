"""What the API returns, as typed objects (the same fields as the server's response bodies).

Unknown fields are kept rather than rejected, so a newer server does not break an older SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class SpanSummary(_Model):
    """A span as search lists it; `input` and `output` only when asked for with `include_io=True`."""

    span_id: str
    trace_id: str
    parent_span_id: str | None = None
    name: str
    kind: str
    start_time: datetime
    end_time: datetime | None = None
    status: str
    status_message: str | None = None
    model: str | None = None
    provider: str | None = None
    response_model: str | None = None
    key_id: str | None = None
    user: str | None = None
    session_id: str | None = None
    endpoint: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    variant: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cache_hit: bool = False
    tags: list[str] = Field(default_factory=list)
    input: Any = None
    output: Any = None


class SpanNode(SpanSummary):
    """A span of a trace with its attributes and its child spans."""

    attributes: dict[str, Any] = {}
    children: list[SpanNode] = []


class Trace(_Model):
    trace_id: str
    spans: list[SpanNode]  # the root spans, children nested, siblings in start order

    def walk(self) -> Iterator[SpanNode]:
        """Every span of the trace, parents before their children."""
        stack = list(reversed(self.spans))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def find(self, name: str) -> SpanNode:
        """The first span called `name`; KeyError when there is none."""
        for node in self.walk():
            if node.name == name:
                return node
        raise KeyError(f"no span named {name!r} in trace {self.trace_id}")


class TracePage(_Model):
    data: list[SpanSummary]
    next_cursor: str | None = None


class Score(_Model):
    """Feedback or an evaluator's score on a trace (or one of its spans)."""

    id: str
    trace_id: str
    span_id: str | None = None
    name: str
    kind: str
    value: float | None = None
    label: str | None = None
    comment: str | None = None
    corrected_output: Any = None
    source: str
    author: str | None = None
    created_at: datetime
