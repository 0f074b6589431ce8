"""The ids the gateway gives the spans it starts: OpenTelemetry's sizes, unique, trace ids time first."""

from __future__ import annotations

import time

from fmops.gateway.spans import new_span_id, new_trace_id, parse_traceparent


def test_trace_ids_begin_with_the_time_in_seconds_and_end_random() -> None:
    before = int(time.time())
    ids = [new_trace_id() for _ in range(50_000)]
    after = int(time.time())
    assert len(set(ids)) == len(ids)
    for trace_id in ids[:100]:
        assert len(trace_id) == 32
        assert int(trace_id, 16) > 0
        assert before <= int(trace_id[:8], 16) <= after
    # The 12 random bytes: every hex digit position takes many values (not a counter, not constant).
    for position in range(8, 32):
        assert len({trace_id[position] for trace_id in ids[:2000]}) == 16
    # In the order made, so the index by trace id grows at its end.
    assert [t[:8] for t in ids] == sorted(t[:8] for t in ids)


def test_span_ids_are_random_and_a_traceparent_round_trips() -> None:
    spans = {new_span_id() for _ in range(50_000)}
    assert len(spans) == 50_000
    assert all(len(s) == 16 for s in list(spans)[:100])
    trace_id, span_id = new_trace_id(), new_span_id()
    assert parse_traceparent(f"00-{trace_id}-{span_id}-01") == (trace_id, span_id)
