"""Span rows to OTLP: GenAI attribute names, resources, kinds, and a round trip through ingest."""

from __future__ import annotations

from typing import Any

import orjson

from fmops.auth import Principal, Role
from fmops.gateway.spans import CallRecord
from fmops.tracing.otlp import ingest
from fmops.tracing.otlp.decode import JSON, PROTOBUF
from fmops.tracing.otlp.encode import encode
from support.otlp import attributes_of, json_body, json_span, span_id, trace_id

PRINCIPAL = Principal(
    key_id="key-123",
    user_id="u1",
    user_name="alice",
    project_id="proj-1",
    project_name="default",
    role=Role.consumer,
)
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def gateway_row(**changes: Any) -> dict[str, Any]:
    """A span row exactly as the gateway writes one for a chat call."""
    record = CallRecord(principal=PRINCIPAL, model="talker", provider="openai", response_model="gpt-4o-mini")
    record.input = {"messages": MESSAGES, "params": {"temperature": 0.3, "max_tokens": 50}}
    record.output = {"role": "assistant", "content": "Paris."}
    record.input_tokens, record.output_tokens, record.cost = 12, 2, 0.0004
    record.session_id = "s-1"
    for name, value in changes.items():
        setattr(record, name, value)
    return record.row()


def test_a_gateway_call_is_exported_with_genai_attributes() -> None:
    row = gateway_row()
    row["status"], row["status_message"] = "error", "upstream returned 500"

    request, skipped = encode([row])

    assert skipped == 0
    (group,) = request.resource_spans
    assert attributes_of(group.resource) == {"service.name": "fmops", "fmops.project_id": "proj-1"}
    (span,) = group.scope_spans[0].spans
    assert group.scope_spans[0].scope.name == "fmops"
    assert span.trace_id.hex() == row["trace_id"]
    assert span.span_id.hex() == row["span_id"]
    assert span.parent_span_id == b""
    assert span.kind == span.SPAN_KIND_CLIENT
    assert span.name == "chat talker"
    assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
    assert (span.status.code, span.status.message) == (span.status.STATUS_CODE_ERROR, "upstream returned 500")
    attributes = attributes_of(span)
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "talker",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.conversation.id": "s-1",
        "gen_ai.input.messages": orjson.dumps(MESSAGES).decode(),
        "gen_ai.output.messages": orjson.dumps([{"role": "assistant", "content": "Paris."}]).decode(),
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.max_tokens": 50,
    }
    assert attributes["user.id"] == "alice"
    assert (attributes["fmops.key_id"], attributes["fmops.cost"]) == ("key-123", 0.0004)


def test_ingested_spans_go_back_out_under_their_own_resource_and_read_back_the_same() -> None:
    """OTLP in -> rows -> OTLP out -> rows again: the columns survive the round trip."""
    trace, root = trace_id(), span_id()
    body = json_body(
        json_span(
            "agent run", {"openinference.span.kind": "AGENT", "user.id": "carol"}, trace=trace, span=root
        ),
        json_span(
            "llm call",
            {
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.provider.name": "openai",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.input.messages": orjson.dumps(MESSAGES).decode(),
                "gen_ai.output.messages": '[{"role": "assistant", "content": "Paris."}]',
                "session.id": "s-2",
                "fmops.prompt.name": "geo",
                "fmops.prompt.version": 2,
                "custom.flag": True,
            },
            trace=trace,
            parent=root,
            status=(2, "failed"),
        ),
        json_span(
            "lookup", {"openinference.span.kind": "TOOL", "input.value": "France"}, trace=trace, parent=root
        ),
        resource={"service.name": "shop", "service.version": "7"},
    )
    first = ingest(body, JSON, "proj-1", "key-1").rows

    request, skipped = encode(first)
    assert skipped == 0
    (group,) = request.resource_spans
    assert attributes_of(group.resource) == {
        "service.name": "shop",
        "service.version": "7",
        "fmops.project_id": "proj-1",
    }
    again = ingest(request.SerializeToString(), PROTOBUF, "proj-1", "key-1").rows

    columns = [c for c in first[0] if c not in ("attributes", "latency_ms")]
    assert [{c: r[c] for c in columns} for r in again] == [{c: r[c] for c in columns} for r in first]
    # Times are stored to the microsecond, so a latency read back from them is within one of the first.
    assert all(abs(a["latency_ms"] - b["latency_ms"]) < 0.001 for a, b in zip(again, first, strict=True))
    assert again[1]["attributes"]["custom.flag"] is True
    assert again[1]["attributes"]["resource.service.name"] == "shop"


def test_rows_whose_ids_are_not_hex_are_skipped_and_counted() -> None:
    good = gateway_row()
    bad = gateway_row(span_id="not-hex")
    uuid_id = gateway_row(span_id="ab" * 16)  # a 16-byte id: OTLP span ids are 8

    request, skipped = encode([good, bad, uuid_id])

    assert skipped == 1
    spans = request.resource_spans[0].scope_spans[0].spans
    assert [s.span_id.hex() for s in spans] == [good["span_id"], "ab" * 8]
