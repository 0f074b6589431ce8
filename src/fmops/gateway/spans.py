"""Building the span record the gateway writes for each call (OpenTelemetry GenAI conventions)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fmops.auth import Principal
from fmops.store import utcnow

# Trace ids need to be unique, not secret: a seeded PRNG is ~50x cheaper here than os.urandom
# (a system call per id), and ids are made on every request.
_ids = random.Random()  # noqa: S311


# bytes.hex() gives what f"{n:032x}" does at a quarter of its cost.
def new_trace_id() -> str:
    """16 bytes, as OpenTelemetry trace ids: the time in whole seconds, then 12 random bytes.

    Time first (the layout of AWS X-Ray's ids, which OpenTelemetry's X-Ray id generator makes) so
    that the spans index by trace id grows at its end, as the start-time indexes do: with random
    ids every stored span dirtied a page somewhere in it, and a call cost more as the database grew
    (~10% less server CPU per gateway call, benchmarks/gateway_ab.py). The W3C `random` flag asks
    for the rightmost 7 bytes to be random; 12 are, ample for uniqueness within a second."""
    return (int(time.time()) << 96 | _ids.getrandbits(96)).to_bytes(16, "big").hex()


def new_span_id() -> str:
    return _ids.getrandbits(64).to_bytes(8, "big").hex()  # 8 bytes, as OpenTelemetry span ids


_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """(trace id, parent span id) from a W3C `traceparent` header; None when absent or invalid.

    An invalid header is ignored, as the W3C spec asks: the call starts a trace of its own.
    """
    if not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    parts = text.strip().lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    trace_id, span_id = parts[1], parts[2]
    if len(trace_id) != 32 or len(span_id) != 16 or not _HEX.issuperset(trace_id + span_id):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


@dataclass
class CallRecord:
    """What one gateway call accumulates, turned into a span row at the end."""

    principal: Principal
    model: str
    kind: str = "llm"
    trace_id: str = field(default_factory=new_trace_id)
    span_id: str = field(default_factory=new_span_id)
    parent_span_id: str | None = None  # the app span this call was made from (traceparent)
    start: datetime = field(default_factory=utcnow)
    provider: str | None = None
    response_model: str | None = None
    user: str | None = None
    session_id: str | None = None
    input: Any = None
    output: Any = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    ttft_ms: float | None = None
    cache_hit: bool = False
    status: str = "ok"
    status_message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Set when the call came through an endpoint (model="<endpoint>"): what it served.
    endpoint: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    variant: str | None = None
    tags: tuple[str, ...] = ()  # the caller's (metadata.tags, X-Fmops-Tags), stored as span_tags rows
    # The rate-limit reservation made at admission, released or settled exactly once.
    admission: Any = None
    settled: bool = False
    # Strict durability: the row the caller must see committed before answering 2xx.
    durable_row: dict[str, Any] | None = None
    # The call's guardrail policies at work (fmops.guardrails.engine.GuardrailRun), when it has any:
    # their decisions become child spans and summary attributes when the call's span is written.
    guardrails: Any = None
    # Child spans of other steps, written with the call's (an endpoint's few-shot retrieval).
    parts: list[dict[str, Any]] = field(default_factory=list)

    def follow(self, traceparent: str | bytes | None) -> None:
        """Join the caller's trace when it sent a valid W3C traceparent."""
        parent = parse_traceparent(traceparent)
        if parent is not None:
            self.trace_id, self.parent_span_id = parent

    def fail(self, message: str) -> None:
        self.status = "error"
        self.status_message = message[:2000]

    def row(self) -> dict[str, Any]:
        end = utcnow()
        attributes = {
            "gen_ai.operation.name": "chat" if self.kind == "llm" else "embeddings",
            "gen_ai.system": self.provider,
            "gen_ai.request.model": self.model,
            "gen_ai.response.model": self.response_model,
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
            **self.attributes,
        }
        row = {
            "span_id": self.span_id,
            "trace_id": self.trace_id,
            "parent_span_id": self.parent_span_id,
            "project_id": self.principal.project_id,
            "name": f"{attributes['gen_ai.operation.name']} {self.model}",
            "kind": self.kind,
            "start_time": self.start,
            "end_time": end,
            "status": self.status,
            "status_message": self.status_message,
            "model": self.model,
            "provider": self.provider,
            "response_model": self.response_model,
            "key_id": self.principal.key_id,
            "user": self.user or self.principal.user_name,
            "session_id": self.session_id,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "latency_ms": (end - self.start).total_seconds() * 1000,
            "ttft_ms": self.ttft_ms,
            "cache_hit": self.cache_hit,
            "endpoint": self.endpoint,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "variant": self.variant,
            "input": self.input,
            "output": self.output,
            "attributes": {k: v for k, v in attributes.items() if v is not None},
        }
        if self.tags:
            row["tags"] = self.tags
        return row
