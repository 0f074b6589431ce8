"""Whatever a client sends, ingest answers with a 4xx or with rows the store can hold: never a crash.

Random OTLP/JSON (the spec's field names with values of any JSON type, and attributes named as the
mapping reads them) and random bytes as protobuf.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmops.errors import UserError
from fmops.tracing.otlp import Ingested, ingest
from fmops.tracing.otlp.decode import JSON, PROTOBUF
from fmops.tracing.otlp.mapping import _COLUMNS, WIDTHS

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
# Attribute names the mapping reads, and indexed ones it rebuilds.
names = st.one_of(
    st.sampled_from(
        [
            *_COLUMNS,
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.prompt",
            "input.value",
            "input.mime_type",
            "fmops.input",
            "fmops.span.kind",
            "openinference.span.kind",
            "gen_ai.operation.name",
            "llm.input_messages.0.message.role",
            "llm.input_messages.x.message",
            "llm.output_messages.1.message.contents.0.message_content.text",
            "retrieval.documents.0.document.content",
            "embedding.embeddings.0.embedding.text",
        ]
    ),
    st.text(max_size=8),
)
any_values = st.one_of(
    st.builds(lambda v: {"stringValue": v}, st.one_of(st.text(max_size=30), st.just('[{"role": "user"}]'))),
    st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(), st.text(max_size=5))),
    st.builds(lambda v: {"doubleValue": v}, st.one_of(st.floats(), st.sampled_from(["NaN", "-Infinity"]))),
    st.builds(lambda v: {"boolValue": v}, json_values),
    st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(st.just({"stringValue": "x"}), max_size=2)),
    json_values,
)
attributes = st.lists(st.builds(lambda k, v: {"key": k, "value": v}, names, any_values), max_size=6)
odd_attributes = st.lists(
    st.builds(lambda k, v: {"key": k, "value": v}, st.one_of(st.integers(), json_values), any_values),
    max_size=2,
)
ids = st.one_of(st.none(), st.sampled_from(["ab" * 16, "cd" * 8, "0" * 32, "ab" * 8]), json_values)
times = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=2**70),
    st.text(max_size=22),
    st.just("1700000000000000000"),
)
# Spans with valid ids and times and random contents (which reach the mapping), or random everything.
readable_spans = st.fixed_dictionaries(
    {
        "traceId": st.just("ab" * 16),
        "spanId": st.sampled_from(["cd" * 8, "ef" * 8]),
        "startTimeUnixNano": st.just("1700000000000000000"),
        "endTimeUnixNano": st.sampled_from(["1700000000000000000", "1700000000500000000"]),
        "name": json_values,
        "attributes": attributes,
        "status": st.fixed_dictionaries({"code": st.integers(0, 2), "message": st.text(max_size=5)}),
        "events": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["gen_ai.user.message", "gen_ai.choice", "exception", "other"]),
                    "attributes": attributes,
                }
            ),
            max_size=2,
        ),
    }
)
spans = st.one_of(
    readable_spans,
    st.fixed_dictionaries(
        {
            "traceId": ids,
            "spanId": ids,
            "name": json_values,
            "startTimeUnixNano": times,
            "endTimeUnixNano": times,
            "attributes": st.one_of(attributes, odd_attributes, json_values),
            "kind": st.one_of(st.integers(-1, 9), st.text(max_size=5)),
            "status": st.one_of(st.fixed_dictionaries({"code": scalars, "message": scalars}), json_values),
            "events": st.one_of(
                st.lists(st.fixed_dictionaries({"name": json_values, "attributes": attributes}), max_size=2),
                json_values,
            ),
        },
        optional={"parentSpanId": ids},
    ),
    json_values,
)
bodies = st.builds(
    lambda groups: {"resourceSpans": groups},
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "resource": st.one_of(st.fixed_dictionaries({"attributes": attributes}), json_values),
                "scopeSpans": st.one_of(
                    st.lists(st.fixed_dictionaries({"spans": st.lists(spans, max_size=4)}), max_size=2),
                    json_values,
                ),
            },
        ),
        max_size=2,
    ),
)


def storable(row: dict[str, Any]) -> None:
    orjson.dumps({k: v for k, v in row.items() if k not in ("start_time", "end_time")})
    for column, width in WIDTHS.items():
        assert row[column] is None or (isinstance(row[column], str) and len(row[column]) <= width), column
    for column in ("input_tokens", "output_tokens", "prompt_version"):
        assert row[column] is None or 0 <= row[column] < 2**31


def answer(body: bytes, media: str) -> Ingested | UserError:
    try:
        return ingest(body, media, "p", "k")
    except UserError as exc:
        return exc


def check(result: Ingested | UserError) -> None:
    if isinstance(result, UserError):
        assert result.status_code == 400
        return
    for row in result.rows:
        storable(row)
    assert (result.rejected > 0) <= (result.message is not None)
    assert "could not be mapped" not in (result.message or ""), result.message  # the mapping's safety net


@SETTINGS
@given(body=bodies)
def test_any_json_body_is_answered(body: dict[str, Any]) -> None:
    # The standard library's JSON writer: it writes what orjson would not (huge integers, NaN).
    check(answer(json.dumps(body).encode(), JSON))


@SETTINGS
@given(body=st.binary(max_size=300))
def test_any_protobuf_body_is_answered(body: bytes) -> None:
    check(answer(body, PROTOBUF))
