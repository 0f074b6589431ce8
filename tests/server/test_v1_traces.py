"""OTLP/HTTP at /v1/traces on a real server: the OpenTelemetry SDK's own exporter as the client, JSON and
gzip, per-span rejection, replays, bad requests; and OTLP export of everything stored to a collector."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import MockUpstream
from support.otlp import Collector, attributes_of, json_body, json_span, run_collector, span_id, trace_id
from support.server import RunningServer

QUESTION = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": QUESTION}]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def app_key(server: RunningServer) -> tuple[str, str]:
    """(key, key id) of an application: a consumer key, the least role that may send spans."""
    with server.client() as admin:
        assert admin.post("/api/users", json={"name": "shop-app", "role": "consumer"}).status_code == 201
        resp = admin.post("/api/keys", json={"name": "shop-key", "user": "shop-app", "role": "consumer"})
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["id"]


def post(server: RunningServer, key: str | None, body: bytes, headers: dict[str, str]) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/traces", content=body, headers={**auth, **headers}, timeout=30)


def read_trace(server: RunningServer, trace: str, spans: int, timeout: float = 10.0) -> dict[str, Any]:
    """The trace as GET /api/traces/{id} shows it, once its `spans` spans are all written."""
    deadline = time.monotonic() + timeout
    with server.client() as admin:
        while True:
            resp = admin.get(f"/api/traces/{trace}")
            if resp.status_code == 200 and len(flatten(resp.json()["spans"])) >= spans:
                found: dict[str, Any] = resp.json()
                return found
            assert resp.status_code in (200, 404), resp.text
            assert time.monotonic() < deadline, f"trace {trace} has not got {spans} spans: {resp.text[:500]}"
            time.sleep(0.05)


def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for node in nodes for n in (node, *flatten(node["children"]))]


def test_the_opentelemetry_sdk_exporter_sends_a_span_tree(
    server: RunningServer, app_key: tuple[str, str]
) -> None:
    key, key_id = app_key
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("shop.checkout", "2.0")
    with tracer.start_as_current_span(
        "checkout", attributes={"session.id": "sess-1", "user.id": "carol"}
    ) as root:
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 9,
                    "gen_ai.usage.output_tokens": 2,
                    "gen_ai.input.messages": orjson.dumps(MESSAGES).decode(),
                    "gen_ai.response.finish_reasons": ["stop"],
                }
            )
        with tracer.start_as_current_span("check stock") as step:
            step.set_attribute("openinference.span.kind", "TOOL")
            step.record_exception(ValueError("out of stock"))
            step.set_status(Status(StatusCode.ERROR, "out of stock"))
    exporter = OTLPSpanExporter(
        endpoint=server.url + "/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
    )
    assert exporter.export(finished.get_finished_spans()) == SpanExportResult.SUCCESS
    exporter.shutdown()

    trace = format(root.get_span_context().trace_id, "032x")
    (top,) = read_trace(server, trace, 3)["spans"]
    assert (top["name"], top["kind"], top["session_id"], top["user"]) == (
        "checkout",
        "span",
        "sess-1",
        "carol",
    )
    chat, stock = top["children"]
    assert chat["parent_span_id"] == top["span_id"] == format(root.get_span_context().span_id, "016x")
    assert (chat["kind"], chat["model"], chat["provider"]) == ("llm", "gpt-4o", "openai")
    assert (chat["input_tokens"], chat["output_tokens"]) == (9, 2)
    assert chat["input"] == {"messages": MESSAGES}
    assert chat["key_id"] == key_id
    assert chat["attributes"]["resource.service.name"] == "shop"
    assert chat["attributes"]["otel.scope.name"] == "shop.checkout"
    assert chat["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert (stock["kind"], stock["status"], stock["status_message"]) == ("tool", "error", "out of stock")
    assert stock["attributes"]["exception.type"] == "ValueError"
    assert chat["latency_ms"] >= 0


def test_openinference_spans_as_gzipped_json(server: RunningServer, app_key: tuple[str, str]) -> None:
    trace, root = trace_id(), span_id()
    body = json_body(
        json_span(
            "answer",
            {"openinference.span.kind": "CHAIN", "input.value": QUESTION, "output.value": "Paris."},
            trace=trace,
            span=root,
        ),
        json_span(
            "ChatCompletion",
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.provider": "openai",
                "llm.token_count.prompt": 14,
                "llm.token_count.completion": 3,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": QUESTION,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Paris.",
                "session.id": "sess-2",
            },
            trace=trace,
            parent=root,
        ),
    )
    resp = post(server, app_key[0], gzip.compress(body), {**JSON, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {}

    (chain,) = read_trace(server, trace, 2)["spans"]
    assert (chain["kind"], chain["input"], chain["output"]) == ("chain", QUESTION, "Paris.")
    (llm,) = chain["children"]
    assert (llm["kind"], llm["model"], llm["provider"], llm["session_id"]) == (
        "llm",
        "gpt-4o-mini",
        "openai",
        "sess-2",
    )
    assert (llm["input_tokens"], llm["output_tokens"]) == (14, 3)
    assert llm["input"] == {"messages": MESSAGES}
    assert llm["output"] == {"role": "assistant", "content": "Paris."}


def test_bad_spans_are_rejected_and_the_good_ones_stored(
    server: RunningServer, app_key: tuple[str, str]
) -> None:
    trace = trace_id()
    now = time.time_ns()
    backwards = json_span("backwards", trace=trace, start_ns=now, duration_ms=-5)
    no_id = json_span("no id", trace=trace)
    no_id["spanId"] = "0" * 16
    body = json_body(json_span("good 1", trace=trace), backwards, no_id, json_span("good 2", trace=trace))

    resp = post(server, app_key[0], body, JSON)

    assert resp.status_code == 200, resp.text
    partial = resp.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert partial["errorMessage"] == (
        "2 of 4 spans rejected: resourceSpans[0].scopeSpans[0].spans[1]: endTimeUnixNano is before"
        " startTimeUnixNano; resourceSpans[0].scopeSpans[0].spans[2]: spanId must be 8 bytes (16 hex"
        " characters), not all zero; got all zero"
    )
    stored = read_trace(server, trace, 2)["spans"]
    assert sorted(s["name"] for s in stored) == ["good 1", "good 2"]


def test_partial_success_in_protobuf(server: RunningServer, app_key: tuple[str, str]) -> None:
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    with provider.get_tracer("t").start_as_current_span("fine"):
        pass
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = encode_spans(finished.get_finished_spans())
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.CopyFrom(request.resource_spans[0].scope_spans[0].spans[0])
    bad.trace_id = b"\x01" * 8  # half a trace id

    resp = post(server, app_key[0], request.SerializeToString(), {"Content-Type": "application/x-protobuf"})

    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(resp.content)
    assert answer.partial_success.rejected_spans == 1
    assert "spans[1]: traceId must be 16 bytes" in answer.partial_success.error_message
    read_trace(server, request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex(), 1)


def test_a_replayed_batch_stores_nothing_twice(server: RunningServer, app_key: tuple[str, str]) -> None:
    trace, root = trace_id(), span_id()
    spans = [json_span("root", trace=trace, span=root), json_span("child", trace=trace, parent=root)]
    body = json_body(*spans)
    for _ in range(2):  # at once, as a client retrying a timed-out request would
        assert post(server, app_key[0], body, JSON).status_code == 200
    read_trace(server, trace, 2)
    spans[0]["name"] = "renamed on replay"
    assert post(server, app_key[0], json_body(*spans), JSON).json() == {}
    time.sleep(0.2)  # past the writer's flush interval: a second copy would be written by now

    (top,) = read_trace(server, trace, 2)["spans"]
    assert [s["name"] for s in flatten([top])] == ["root", "child"]  # the first copy, once


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        (
            {"Content-Type": "text/plain"},
            b"hi",
            415,
            "send OTLP as application/x-protobuf or application/json",
        ),
        ({**JSON, "Content-Encoding": "br"}, b"{}", 415, "Content-Encoding 'br' is not accepted"),
        (JSON, b"{not json", 400, "the body is not valid JSON"),
        (
            {"Content-Type": "application/x-protobuf"},
            b"\xff\xfe garbage",
            400,
            "not an OTLP ExportTraceServiceRequest",
        ),
        ({**JSON, "Content-Encoding": "gzip"}, b"not gzip", 400, "not valid gzip"),
        (
            {**JSON, "Content-Encoding": "gzip"},
            gzip.compress(bytes(17 * 1024 * 1024)),  # 17 MiB of zeros in 17 KB: past the 16 MiB limit
            413,
            "inflates to more than the limit",
        ),
    ],
)
def test_bad_requests(
    server: RunningServer,
    app_key: tuple[str, str],
    headers: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    resp = post(server, app_key[0], body, headers)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]["message"]


def test_a_key_is_required(server: RunningServer) -> None:
    body = json_body(json_span("s"))
    assert post(server, None, body, JSON).status_code == 401
    resp = post(server, "fmk-not-a-real-key", body, JSON)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


# --- export ----------------------------------------------------------------------------------------

CANARY = "sk-canary-7f3a9c1e5b2d4f60"  # the upstream's API key: must never leave in an export


@pytest.fixture(scope="module")
def exporting(
    mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Collector]]:
    """A server exporting to a collector, in strict durability, with a model whose upstream has a key.

    The endpoint is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is often given.
    """
    home = tmp_path_factory.mktemp("otlp-export")
    env = {
        "FMOPS_OTLP_HEADERS": orjson.dumps({"x-collector-token": "t0k"}).decode(),
        "FMOPS_TRACE_DURABILITY": "strict",
    }
    with (
        run_collector() as collector,
        gateway_server(home, {**env, "FMOPS_OTLP_ENDPOINT": collector.base_url}) as running,
    ):
        add_models(home, {"talker": openai_model("ok-talker", mock.url, api_key=CANARY)})
        yield running, collector


def test_strict_durability_answers_once_the_spans_are_stored(
    exporting: tuple[RunningServer, Collector],
) -> None:
    server, _ = exporting
    trace = trace_id()
    assert post(server, server.admin_key, json_body(json_span("s", trace=trace)), JSON).status_code == 200
    with server.client() as admin:
        assert admin.get(f"/api/traces/{trace}").status_code == 200  # at once: no waiting for the writer


def test_gateway_and_ingested_spans_are_exported_with_genai_attributes(
    exporting: tuple[RunningServer, Collector],
) -> None:
    server, collector = exporting
    with sdk(server) as client:
        raw = client.chat.completions.with_raw_response.create(model="talker", messages=MESSAGES)
    call_trace = raw.headers["x-fmops-trace-id"]
    app_trace = trace_id()
    body = json_body(
        json_span("app step", {"gen_ai.request.model": "m", "fmops.endpoint": "bot"}, trace=app_trace),
        resource={"service.name": "shop"},
    )
    assert post(server, server.admin_key, body, JSON).status_code == 200

    def exported(trace: str) -> tuple[dict[str, Any], Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for resource, span in collector.spans():
                if span.trace_id.hex() == trace:
                    return resource, span
            time.sleep(0.05)
        raise AssertionError(f"trace {trace} was not exported")

    resource, call = exported(call_trace)
    assert resource["service.name"] == "fmops"
    attributes = attributes_of(call)
    assert attributes["gen_ai.operation.name"] == "chat"
    (stored,) = read_trace(server, call_trace, 1)["spans"]
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]) == (
        "talker",
        stored["response_model"],
    )
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert orjson.loads(attributes["gen_ai.input.messages"]) == MESSAGES
    assert orjson.loads(attributes["gen_ai.output.messages"])[0]["role"] == "assistant"

    resource, step = exported(app_trace)
    assert resource["service.name"] == "shop"  # its own resource, as it came in
    assert attributes_of(step)["fmops.endpoint"] == "bot"

    for received in collector.received:
        assert received.headers["x-collector-token"] == "t0k"
        assert CANARY.encode() not in received.raw
        assert CANARY not in str(received.headers)

    with server.client() as admin:
        metrics = admin.get("/metrics").text
    exported_total = next(
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "fmops_otlp_spans_exported_total"
    )
    assert exported_total >= 2
