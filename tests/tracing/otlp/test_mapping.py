"""OTLP spans to span rows: GenAI conventions (current and older), OpenInference, fmops names, bounds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from fmops.tracing.otlp import ingest, response_body
from fmops.tracing.otlp.decode import JSON, PROTOBUF
from fmops.tracing.otlp.limits import MAX_ATTRIBUTES, MAX_EVENTS, MAX_IO_CHARS, MAX_VALUE_CHARS
from fmops.tracing.otlp.mapping import WIDTHS
from support.otlp import json_body, json_span

USER_TEXT = "What is the capital of France?"
ANSWER = "Paris."


def row_of(
    attributes: dict[str, Any], *, resource: dict[str, Any] | None = None, **span: Any
) -> dict[str, Any]:
    result = ingest(
        json_body(json_span("step", attributes, **span), resource=resource), JSON, "proj-1", "key-1"
    )
    assert result.message is None
    (row,) = result.rows
    return row


def test_genai_conventions() -> None:
    row = row_of(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.system_instructions": orjson.dumps([{"type": "text", "content": "Be brief."}]).decode(),
            "gen_ai.input.messages": orjson.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": USER_TEXT}]}]
            ).decode(),
            "gen_ai.output.messages": orjson.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": ANSWER}],
                        "finish_reason": "stop",
                    }
                ]
            ).decode(),
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.request.temperature": 0.2,
        }
    )
    assert row["kind"] == "llm"
    assert (row["model"], row["response_model"], row["provider"]) == ("gpt-4o", "gpt-4o-2024-08-06", "openai")
    assert (row["input_tokens"], row["output_tokens"]) == (12, 3)
    assert row["session_id"] == "conv-1"
    assert row["input"] == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": USER_TEXT}]
    }
    assert row["output"] == {"role": "assistant", "content": ANSWER, "finish_reason": "stop"}
    attributes = row["attributes"]
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    # What became the input and output is not stored twice.
    assert not {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"} & set(
        attributes
    )
    assert (row["project_id"], row["key_id"], row["status"], row["cache_hit"]) == (
        "proj-1",
        "key-1",
        "ok",
        False,
    )


def test_structured_messages_as_otlp_values() -> None:
    """Messages sent as an array of maps (an AnyValue), not as JSON text; tool calls kept as parts."""
    tool_call = {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}
    row = row_of(
        {
            "gen_ai.request.model": "m",
            "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": USER_TEXT}]}],
            "gen_ai.output.messages": [{"role": "assistant", "parts": [tool_call]}],
        }
    )
    assert row["input"] == {"messages": [{"role": "user", "content": USER_TEXT}]}
    assert row["output"] == {"role": "assistant", "parts": [tool_call]}


def test_older_genai_names_and_flattened_prompts() -> None:
    row = row_of(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku",
            "gen_ai.usage.prompt_tokens": 20,
            "gen_ai.usage.completion_tokens": 4,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "Be brief.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": USER_TEXT,
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": ANSWER,
            "gen_ai.completion.0.finish_reason": "stop",
        }
    )
    assert (row["provider"], row["model"], row["kind"]) == ("anthropic", "claude-3-5-haiku", "llm")
    assert (row["input_tokens"], row["output_tokens"]) == (20, 4)
    assert row["input"] == {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": USER_TEXT}]
    }
    assert row["output"] == {"role": "assistant", "content": ANSWER, "finish_reason": "stop"}
    assert not any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in row["attributes"])


def test_messages_sent_as_span_events() -> None:
    row = row_of(
        {"gen_ai.request.model": "m"},
        events=[
            ("gen_ai.system.message", {"content": "Be brief.", "gen_ai.system": "openai"}),
            ("gen_ai.user.message", {"content": USER_TEXT}),
            (
                "gen_ai.choice",
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": '{"role": "assistant", "content": "Paris."}',
                },
            ),
        ],
    )
    assert row["input"] == {
        "messages": [{"content": "Be brief.", "role": "system"}, {"content": USER_TEXT, "role": "user"}]
    }
    assert row["output"] == {"role": "assistant", "content": ANSWER, "finish_reason": "stop"}

    older = row_of(
        {"gen_ai.request.model": "m"},
        events=[
            ("gen_ai.content.prompt", {"gen_ai.prompt": '[{"role": "user", "content": "hi"}]'}),
            ("gen_ai.content.completion", {"gen_ai.completion": "hello"}),
        ],
    )
    assert older["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert older["output"] == "hello"


def test_openinference_llm_span() -> None:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": USER_TEXT}]}
    row = row_of(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.token_count.prompt": 30,
            "llm.token_count.completion": 8,
            "llm.token_count.total": 38,
            "llm.cost.total": 0.0012,
            "llm.invocation_parameters": '{"temperature": 0}',
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Be brief.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.contents.0.message_content.type": "text",
            "llm.input_messages.1.message.contents.0.message_content.text": USER_TEXT,
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": "France"}',
            "input.value": orjson.dumps(request).decode(),
            "input.mime_type": "application/json",
            "session.id": "sess-9",
            "user.id": "carol",
        }
    )
    assert (row["kind"], row["model"], row["provider"]) == ("llm", "gpt-4o-mini", "openai")
    assert (row["input_tokens"], row["output_tokens"], row["cost"]) == (30, 8, 0.0012)
    assert (row["session_id"], row["user"]) == ("sess-9", "carol")
    assert row["input"] == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "contents": [{"type": "text", "text": USER_TEXT}]},
        ]
    }
    assert row["output"] == {
        "role": "assistant",
        "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "France"}'}}],
    }
    attributes = row["attributes"]
    assert attributes["llm.invocation_parameters"] == '{"temperature": 0}'
    assert attributes["input.value"] == orjson.dumps(request).decode()  # the raw request, kept as sent
    assert not any(k.startswith(("llm.input_messages.", "llm.output_messages.")) for k in attributes)


@pytest.mark.parametrize(
    ("attributes", "kind", "input_", "output"),
    [
        (
            {
                "openinference.span.kind": "CHAIN",
                "input.value": '{"q": 1}',
                "input.mime_type": "application/json",
                "output.value": "done",
                "output.mime_type": "text/plain",
            },
            "chain",
            {"q": 1},
            "done",
        ),
        (
            {
                "openinference.span.kind": "TOOL",
                "input.value": "42",
                "input.mime_type": "application/json",
                "output.value": '"sunny"',
                "output.mime_type": "application/json",
            },
            "tool",
            42,  # a JSON scalar declared as JSON is parsed, like an object
            "sunny",
        ),
        (
            {
                "openinference.span.kind": "TOOL",
                "tool.name": "weather",
                "input.value": '{"city": "Paris"}',
                "output.value": "sunny",
            },
            "tool",
            '{"city": "Paris"}',  # no mime type: text as sent
            "sunny",
        ),
        (
            {
                "openinference.span.kind": "RETRIEVER",
                "input.value": "capital of France",
                "retrieval.documents.0.document.id": "d1",
                "retrieval.documents.0.document.content": "Paris is...",
                "retrieval.documents.0.document.score": 0.9,
                "retrieval.documents.1.document.id": "d2",
            },
            "retrieval",
            "capital of France",
            {"documents": [{"id": "d1", "content": "Paris is...", "score": 0.9}, {"id": "d2"}]},
        ),
        (
            {
                "openinference.span.kind": "EMBEDDING",
                "embedding.model_name": "e5",
                "embedding.embeddings.0.embedding.text": "a",
                "embedding.embeddings.0.embedding.vector": [0.1, 0.2],
                "embedding.embeddings.1.embedding.text": "b",
            },
            "embedding",
            {"input": ["a", "b"], "count": 2},
            None,
        ),
        (
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "weather",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "sunny",
            },
            "tool",
            {"city": "Paris"},
            "sunny",
        ),
        ({"http.method": "GET"}, "span", None, None),
        ({"gen_ai.operation.name": "invoke_agent"}, "agent", None, None),
    ],
)
def test_other_kinds_of_steps(attributes: dict[str, Any], kind: str, input_: Any, output: Any) -> None:
    row = row_of(attributes)
    assert (row["kind"], row["input"], row["output"]) == (kind, input_, output)


def test_fmops_names_win_over_common_ones() -> None:
    row = row_of(
        {
            "fmops.span.kind": "agent",
            "fmops.endpoint": "support-bot",
            "fmops.prompt.name": "triage",
            "fmops.prompt.version": 3,
            "fmops.variant": "b",
            "fmops.session_id": "fm-session",
            "session.id": "other-session",
            "fmops.user": "dave",
            "enduser.id": "someone-else",
            "fmops.cost": 0.5,
            "fmops.ttft_ms": 120.0,
            "fmops.cache_hit": True,
            "fmops.input": '{"question": "hi"}',
            "fmops.output": "plain text answer",
            "openinference.span.kind": "CHAIN",
        }
    )
    assert row["kind"] == "agent"
    assert (row["endpoint"], row["prompt_name"], row["prompt_version"], row["variant"]) == (
        "support-bot",
        "triage",
        3,
        "b",
    )
    assert (row["session_id"], row["user"], row["cost"], row["ttft_ms"]) == ("fm-session", "dave", 0.5, 120.0)
    assert row["cache_hit"] is True
    assert (row["input"], row["output"]) == ({"question": "hi"}, "plain text answer")


def test_resource_scope_times_and_status() -> None:
    start = time.time_ns()
    row = row_of(
        {"a": 1},
        resource={"service.name": "shop", "deployment.environment": "prod"},
        start_ns=start,
        duration_ms=250,
        status=(2, "upstream timed out"),
        kind=3,
    )
    assert row["attributes"] == {
        "a": 1,
        "resource.service.name": "shop",
        "resource.deployment.environment": "prod",
        "otel.scope.name": "test-app",
        "otel.scope.version": "1.0",
        "otel.span.kind": 3,  # client: kept for export
    }
    assert row["start_time"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start // 1000)
    assert row["end_time"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=(start + 250_000_000) // 1000
    )
    assert row["latency_ms"] == 250.0
    assert (row["status"], row["status_message"]) == ("error", "upstream timed out")


def test_an_exception_event_explains_an_error_without_a_message() -> None:
    exception = {
        "exception.type": "ValueError",
        "exception.message": "bad input",
        "exception.stacktrace": "Traceback...",
    }
    row = row_of({}, status=(2, ""), events=[("exception", exception), ("retry", {"attempt": 2})])
    assert (row["status"], row["status_message"]) == ("error", "bad input")
    assert {k: row["attributes"][k] for k in exception} == exception
    (other,) = row["attributes"]["otel.events"]
    assert other["name"] == "retry"
    assert other["attributes"] == {"attempt": 2}


def test_bounds() -> None:
    many = {f"k{i:03}": i for i in range(MAX_ATTRIBUTES + 50)}
    row = row_of(many)
    assert len([k for k in row["attributes"] if k.startswith("k")]) == MAX_ATTRIBUTES
    assert row["attributes"]["otel.dropped_attributes_count"] == 50

    row = row_of(
        {
            "long": "x" * (MAX_VALUE_CHARS + 10),
            "y" * 300: "a long key",
            "list": ["z" * 1000] * 20,
            "gen_ai.request.model": "m" * 300,
            "gen_ai.usage.input_tokens": 2**40,
            "gen_ai.usage.output_tokens": -1,
            "fmops.cost": float("nan"),
            "fmops.session_id": "s" * 500,
            "input.value": "i" * (MAX_IO_CHARS + 5),
        },
        events=[(f"e{i}", {}) for i in range(MAX_EVENTS + 5)],
    )
    attributes = row["attributes"]
    assert attributes["long"] == "x" * MAX_VALUE_CHARS + "… [10 more characters]"
    assert "y" * 300 not in attributes
    assert attributes["list"].endswith("more characters]")  # its JSON text, cut
    assert row["model"] == "m" * WIDTHS["model"]
    assert row["session_id"] == "s" * WIDTHS["session_id"]
    assert (row["input_tokens"], row["output_tokens"], row["cost"]) == (None, None, None)
    assert row["input"] == "i" * MAX_IO_CHARS + "… [5 more characters]"
    assert len(attributes["otel.events"]) <= MAX_VALUE_CHARS  # cut as JSON text too


def test_bad_spans_are_listed_with_their_index() -> None:
    now = time.time_ns()
    spans = [json_span("good")]
    spans.append(json_span("backwards", start_ns=now, duration_ms=-1))
    spans.append(json_span("zero-trace", trace="0" * 32))
    for i in range(6):
        spans.append(json_span(f"unfinished-{i}"))
        spans[-1]["endTimeUnixNano"] = "0"
    result = ingest(json_body(*spans), JSON, "p", None)

    assert [r["name"] for r in result.rows] == ["good"]
    assert result.rejected == 8
    assert result.message is not None
    assert result.message.startswith(
        "8 of 9 spans rejected: resourceSpans[0].scopeSpans[0].spans[1]: endTimeUnixNano is before "
        "startTimeUnixNano; resourceSpans[0].scopeSpans[0].spans[2]: traceId must be 16 bytes"
    )
    assert "spans[3]: endTimeUnixNano is missing" in result.message
    assert result.message.endswith("; and 3 more")


def test_responses_in_the_request_encoding() -> None:
    fine = ingest(json_body(json_span("a")), JSON, "p", None)
    assert response_body(fine, JSON) == b"{}"
    assert (
        ExportTraceServiceResponse.FromString(response_body(fine, PROTOBUF)) == ExportTraceServiceResponse()
    )

    bad = json_span("b")
    bad["spanId"] = ""
    partial = ingest(json_body(json_span("a"), bad), JSON, "p", None)
    body = orjson.loads(response_body(partial, JSON))
    assert body["partialSuccess"]["rejectedSpans"] == "1"  # int64 as protobuf's JSON writes it
    assert "spans[1]: spanId must be 8 bytes" in body["partialSuccess"]["errorMessage"]
    decoded = ExportTraceServiceResponse.FromString(response_body(partial, PROTOBUF))
    assert decoded.partial_success.rejected_spans == 1
    assert decoded.partial_success.error_message == body["partialSuccess"]["errorMessage"]


def test_a_group_that_cannot_be_read_is_reported_even_with_no_span_rejected() -> None:
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": {"spans": []}}]})
    result = ingest(body, JSON, "p", None)
    assert (result.rows, result.rejected) == ([], 0)
    assert result.message == "some spans could not be read: resourceSpans[0]: scopeSpans must be an array"
