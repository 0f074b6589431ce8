"""Reading OTLP request bodies: media types, gzip, protobuf and JSON to the same spans, bad spans reported."""

from __future__ import annotations

import base64
import gzip
import zlib

import orjson
import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fmops.errors import PayloadTooLarge, UserError
from fmops.tracing.otlp.decode import (
    JSON,
    PROTOBUF,
    UnsupportedMediaType,
    decode_json,
    decode_protobuf,
    decompress,
    media_type,
)
from support.otlp import json_request, json_span, span_id, trace_id

ATTRIBUTES = {
    "text": "hello",
    "count": 7,
    "ratio": 0.5,
    "flag": True,
    "tags": ["a", "b"],
    "nested": {"inner": 1},
}


def as_protobuf(request: dict) -> bytes:
    """The same request in protobuf, through protobuf's own JSON reader (which takes ids as base64)."""
    copy = orjson.loads(orjson.dumps(request))
    for group in copy["resourceSpans"]:
        for scoped in group["scopeSpans"]:
            for span in scoped["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if span.get(field):
                        span[field] = base64.b64encode(bytes.fromhex(span[field])).decode()
    return ParseDict(copy, ExportTraceServiceRequest()).SerializeToString()


def test_protobuf_and_json_decode_to_the_same_spans() -> None:
    parent = span_id()
    request = json_request(
        [
            json_span("root", ATTRIBUTES, span=parent, status=(2, "boom"), kind=3),
            json_span("child", {"k": "v"}, parent=parent, events=[("note", {"n": 1})]),
        ],
        resource={"service.name": "shop", "service.version": "2"},
    )
    from_json = decode_json(orjson.dumps(request))
    from_protobuf = decode_protobuf(as_protobuf(request))

    assert from_json.problems == from_protobuf.problems == []
    assert from_json.spans == from_protobuf.spans
    root, child = from_json.spans
    assert root.trace_id == request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    assert root.span_id == parent
    assert root.parent_span_id is None
    assert child.parent_span_id == parent
    assert root.attributes == ATTRIBUTES
    assert (root.kind, root.status_code, root.status_message) == (3, 2, "boom")
    assert root.end_ns - root.start_ns == 5_000_000
    assert child.events[0].name == "note"
    assert child.events[0].attributes == {"n": 1}
    assert root.context == {
        "resource.service.name": "shop",
        "resource.service.version": "2",
        "otel.scope.name": "test-app",
        "otel.scope.version": "1.0",
    }


def test_json_accepts_int64_as_numbers_enum_names_and_base64_ids() -> None:
    span = json_span("s", {})
    span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # a number, not a string
    span["kind"] = "SPAN_KIND_SERVER"
    span["status"] = {"code": "STATUS_CODE_ERROR"}
    span["attributes"] = [
        {"key": "n", "value": {"intValue": 12}},
        {"key": "d", "value": {"doubleValue": "NaN"}},
    ]
    hex_trace = span["traceId"]
    span["traceId"] = base64.b64encode(bytes.fromhex(hex_trace)).decode()

    (decoded,) = decode_json(orjson.dumps(json_request([span]))).spans

    assert decoded.trace_id == hex_trace
    assert (decoded.kind, decoded.status_code) == (2, 2)
    assert decoded.attributes == {"n": 12, "d": "nan"}  # NaN has no JSON form: kept as text


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("traceId", None, "traceId must be 16 bytes (32 hex characters), not all zero; got missing"),
        ("traceId", "0" * 32, "got all zero"),
        ("traceId", "ab" * 8, "got 8 bytes"),
        ("spanId", "zz" * 8, "spanId must be 16 hex characters"),
        ("parentSpanId", "ab" * 4, "parentSpanId must be 8 bytes"),
        ("attributes", "not a list", "malformed span"),
    ],
)
def test_a_bad_span_is_reported_by_index_and_the_others_kept(field: str, value: object, reason: str) -> None:
    bad = json_span("bad")
    if value is None:
        del bad[field]
    else:
        bad[field] = value
    good = [json_span("good-1"), json_span("good-2")]
    decoded = decode_json(orjson.dumps(json_request([good[0], bad, good[1]])))

    assert [s.name for s in decoded.spans] == ["good-1", "good-2"]
    assert decoded.rejected == 1
    (problem,) = decoded.problems
    assert problem.describe().startswith("resourceSpans[0].scopeSpans[0].spans[1]: ")
    assert reason in problem.message


def test_protobuf_ids_are_checked_too() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=bytes(16), span_id=bytes.fromhex(span_id()), name="zero trace")
    spans.add(trace_id=bytes.fromhex(trace_id()), span_id=b"\x01\x02", name="short span id")
    spans.add(trace_id=bytes.fromhex(trace_id()), span_id=bytes.fromhex(span_id()), name="fine")

    decoded = decode_protobuf(request.SerializeToString())

    assert [s.name for s in decoded.spans] == ["fine"]
    assert [p.message for p in decoded.problems] == [
        "traceId must be 16 bytes (32 hex characters), not all zero; got all zero",
        "spanId must be 8 bytes (16 hex characters), not all zero; got 2 bytes",
    ]


def test_a_malformed_group_is_reported_without_failing_the_batch() -> None:
    body = {"resourceSpans": [{"scopeSpans": 5}, json_request([json_span("ok")])["resourceSpans"][0]]}

    decoded = decode_json(orjson.dumps(body))

    assert [s.name for s in decoded.spans] == ["ok"]
    assert decoded.rejected == 0  # no span could be counted in the broken group
    assert decoded.problems[0].describe() == "resourceSpans[0]: scopeSpans must be an array"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b" ", "the request body is missing"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans must be an array of objects"),
        (b'{"resourceSpans": [1]}', "resourceSpans must be an array of objects"),
    ],
)
def test_a_body_that_is_not_otlp_json_is_a_400(body: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        decode_json(body)
    assert caught.value.status_code == 400


def test_a_body_that_is_not_otlp_protobuf_is_a_400() -> None:
    with pytest.raises(UserError, match="not an OTLP ExportTraceServiceRequest in protobuf"):
        decode_protobuf(b"\xff\xff\xff garbage")


def test_nul_characters_are_replaced_in_both_encodings() -> None:
    request = json_request([json_span("a\x00b", {"k\x00": "v\x00", "list": ["x\x00"]})])
    for decoded in (decode_json(orjson.dumps(request)), decode_protobuf(as_protobuf(request))):
        (span,) = decoded.spans
        assert span.name == "a\ufffdb"
        assert span.attributes == {"k\ufffd": "v\ufffd", "list": ["x\ufffd"]}


def test_media_types() -> None:
    assert media_type("application/json; charset=utf-8") == JSON
    assert media_type("application/x-protobuf") == PROTOBUF
    assert media_type("Application/Protobuf") == PROTOBUF
    with pytest.raises(UnsupportedMediaType) as caught:
        media_type("text/plain")
    assert caught.value.status_code == 415
    assert "application/x-protobuf or application/json" in caught.value.message


def test_gzip_is_undone_within_the_limit() -> None:
    data = b"x" * 10_000
    assert decompress(gzip.compress(data), "gzip", 20_000) == data
    assert (
        decompress(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip", 20_000) == data
    )  # 2 members
    assert decompress(data, None, 20_000) == data
    assert decompress(data, "identity", 20_000) == data


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(bytes(50_000_000))  # 50 MB of zeros in ~50 KB
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="inflates to more than the limit of 1000000 bytes"):
        decompress(bomb, "gzip", 1_000_000)


@pytest.mark.parametrize(
    ("body", "encoding", "error", "message"),
    [
        (b"plain", "gzip", UserError, "not valid gzip"),
        (gzip.compress(b"x" * 1000, mtime=0)[:-12], "gzip", UserError, "truncated"),
        (zlib.compress(b"x"), "br", UnsupportedMediaType, "Content-Encoding 'br' is not accepted"),
    ],
    ids=["not-gzip", "truncated-gzip", "brotli"],  # stable ids: gzip bodies carry a timestamp
)
def test_bad_encodings(body: bytes, encoding: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decompress(body, encoding, 1_000_000)
