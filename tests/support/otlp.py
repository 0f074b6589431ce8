"""OTLP for tests: request bodies in OTLP/JSON, and a collector that records what an exporter sends."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from support.threaded_app import serve_in_thread

_ids = random.Random()


def trace_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


def span_id() -> str:
    return f"{_ids.getrandbits(64):016x}"


def any_value(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP/JSON AnyValue (int64 as a string, as the spec writes it)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        finite = value == value and abs(value) != float("inf")
        return {
            "doubleValue": value if finite else str(value).replace("nan", "NaN").replace("inf", "Infinity")
        }
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def json_span(
    name: str = "step",
    attributes: Mapping[str, Any] | None = None,
    *,
    trace: str | None = None,
    span: str | None = None,
    parent: str | None = None,
    start_ns: int | None = None,
    duration_ms: float = 5.0,
    events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    status: tuple[int, str] | None = None,
    kind: int = 1,
) -> dict[str, Any]:
    start = start_ns if start_ns is not None else time.time_ns()
    body: dict[str, Any] = {
        "traceId": trace or trace_id(),
        "spanId": span or span_id(),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + int(duration_ms * 1e6)),
        "attributes": key_values(attributes or {}),
    }
    if parent:
        body["parentSpanId"] = parent
    if events:
        body["events"] = [
            {"name": n, "timeUnixNano": str(start), "attributes": key_values(a)} for n, a in events
        ]
    if status:
        body["status"] = {"code": status[0], "message": status[1]}
    return body


def json_request(
    spans: Sequence[dict[str, Any]],
    resource: Mapping[str, Any] | None = None,
    scope: tuple[str, str] | None = ("test-app", "1.0"),
) -> dict[str, Any]:
    group: dict[str, Any] = {"resource": {"attributes": key_values(resource or {"service.name": "test-app"})}}
    scoped: dict[str, Any] = {"spans": list(spans)}
    if scope:
        scoped["scope"] = {"name": scope[0], "version": scope[1]}
    group["scopeSpans"] = [scoped]
    return {"resourceSpans": [group]}


def json_body(*spans: dict[str, Any], **kwargs: Any) -> bytes:
    return orjson.dumps(json_request(spans, **kwargs))


def attributes_of(span: Any) -> dict[str, Any]:
    """A protobuf span's attributes as Python values."""
    return {kv.key: _value(kv.value) for kv in span.attributes}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


# --- a collector ---------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes  # the body after Content-Encoding was undone
    request: ExportTraceServiceRequest


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: records each request; answers the scripted statuses first."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)  # statuses to answer before accepting
    reject: int = 0  # spans to report as rejected in each accepted response's partial_success
    attempts: int = 0

    @property
    def base_url(self) -> str:
        return self.url.removesuffix("/v1/traces")

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span received, with its resource's attributes."""
        return [
            (attributes_of(group.resource), span)
            for got in self.received
            for group in got.request.resource_spans
            for scoped in group.scope_spans
            for span in scoped.spans
        ]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, Any], Any]]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        spans = self.spans()
        assert len(spans) >= count, f"collector got {len(spans)} spans, expected {count}"
        return spans

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.script:
            return web.Response(status=self.script.popleft(), headers={"Retry-After": "0"})
        # aiohttp has already undone the Content-Encoding (gzip).
        decoded = ExportTraceServiceRequest.FromString(body)
        self.received.append(Received(dict(request.headers), body, decoded))
        response = ExportTraceServiceResponse()
        if self.reject:
            response.partial_success.rejected_spans = self.reject
            response.partial_success.error_message = "rejected by the test collector"
        return web.Response(body=response.SerializeToString(), content_type="application/x-protobuf")


@contextmanager
def run_collector() -> Iterator[Collector]:
    collector = Collector()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", collector._handle)
    with serve_in_thread(app) as port:
        collector.url = f"http://127.0.0.1:{port}/v1/traces"
        yield collector
