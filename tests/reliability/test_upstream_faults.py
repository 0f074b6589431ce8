"""Issue 7, item 11: every kind of upstream fault at once, with callers that each have a deadline.

tests/gateway/test_resilience.py checks each fault alone; here they arrive together and
concurrently, as they do in production, and the suite checks what every caller got: an answer or a
clear error (status, message, code, Retry-After on a 503) within its deadline; retries bounded; a
span for every call; a model that goes down cools down without being called, then recovers with
exactly one probe. Backend-independent (no store work in the checks): one SQLite server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from support.gateway import read_span
from support.mock_upstream import REPLY, MockUpstream
from support.reliability import BREAKER_COOLDOWN, BREAKER_THRESHOLD, MODELS, Outcome, call, chat_body
from support.server import RunningServer

DEADLINE = 2.0  # each storm call's `timeout` (fmops extension): retries and fallbacks fit in it
SLACK = 1.0  # scheduling on two shared cores, and the last attempt's own response time

FAULTS = ["ok", "slow", "boom", "busy", "unavailable", "hang", "garbage", "trunc", "stall"]
# (alias, stream) of each storm call kind; each runs CALLS_PER_KIND times, all at once.
KINDS = [(alias, False) for alias in FAULTS if alias != "trunc"] + [
    ("ok", True),
    ("boom", True),
    ("unavailable", True),
    ("trunc", True),
    ("stall", True),
]
CALLS_PER_KIND = 5
ERROR_CODES = {"upstream_error", "upstream_timeout", "upstream_rate_limited", "stream_error"}


def _client(gateway: RunningServer, timeout: float = 30) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    return httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=timeout)


def _is_clear_error(outcome: Outcome) -> bool:
    """An OpenAI-shaped error that says what happened; a 503 also says when to come back."""
    error = outcome.error or {}
    if not error.get("message") or error.get("code") not in ERROR_CODES:
        return False
    if outcome.status == 200:
        return error["code"] == "stream_error"  # a stream that broke after it started
    if outcome.status == 503:
        return int(outcome.headers.get("retry-after", "0")) >= 1
    return outcome.status in (502, 504)


def test_a_storm_of_faults_answers_every_caller_within_its_deadline(
    gateway: RunningServer, upstream: MockUpstream
) -> None:
    calls = [(alias, stream) for alias, stream in KINDS for _ in range(CALLS_PER_KIND)]

    async def storm() -> list[Outcome]:
        async with _client(gateway) as client:
            return await asyncio.gather(
                *(call(client, chat_body(alias, stream=stream, timeout=DEADLINE)) for alias, stream in calls)
            )

    outcomes = asyncio.run(storm())
    by_kind: dict[tuple[str, bool], Counter[Any]] = {}
    for (alias, stream), outcome in zip(calls, outcomes, strict=True):
        answered = outcome.status == 200 and outcome.error is None
        assert answered or _is_clear_error(outcome), (alias, stream, outcome)
        if answered:
            assert outcome.text == REPLY, (alias, stream, outcome)
        # A stalled stream is bounded by its per-chunk timeout (1 s), not the whole deadline.
        assert outcome.seconds < DEADLINE + SLACK, (alias, stream, outcome.seconds, outcome.error)
        by_kind.setdefault((alias, stream), Counter())[outcome.status if not answered else "ok"] += 1
    print("storm outcomes:", {f"{a}{'/stream' if s else ''}": dict(c) for (a, s), c in by_kind.items()})

    # Healthy models, and a failing one with a healthy fallback, answer every time.
    for kind in [("ok", False), ("ok", True), ("slow", False), ("boom", False), ("boom", True)]:
        assert by_kind[kind] == {"ok": CALLS_PER_KIND}, (kind, by_kind[kind])
    # Faulty ones never answer (a 200 for a stream that broke is still an error event).
    for alias in ("busy", "unavailable", "hang", "garbage", "stall"):
        assert "ok" not in by_kind[(alias, False)], (alias, by_kind[(alias, False)])
    assert "ok" not in by_kind[("trunc", True)]
    assert "ok" not in by_kind[("stall", True)]

    # Retries are bounded: no upstream saw more than (retries + 1) requests per call that reached it.
    seen = Counter(r["body"]["model"] for r in upstream.state.requests)
    for alias in FAULTS:
        name, retries = MODELS[alias]["model"], MODELS[alias]["max_retries"]
        # "ok" is also the fallback of every "boom" call.
        reaching = sum(1 for a, _ in calls if a == alias or (alias == "ok" and a == "boom"))
        assert seen[name] <= reaching * (retries + 1), (alias, seen[name])
    assert seen["always-500"] >= 1
    assert seen["ok-storm"] >= 4 * CALLS_PER_KIND

    # Every call, answered or not, has its span, with the matching status.
    for outcome in outcomes:
        assert outcome.trace_id, outcome
        span = read_span(gateway, outcome.trace_id)
        assert span["status"] == ("error" if outcome.error else "ok"), (outcome, span["status_message"])
    assert gateway.proc.poll() is None
    assert "unhandled error" not in gateway.log_text()


def test_an_upstream_outage_cools_down_then_recovers_with_one_probe(
    gateway: RunningServer, upstream: MockUpstream
) -> None:
    async def round_of(n: int) -> list[Outcome]:
        async with _client(gateway) as client:
            return await asyncio.gather(*(call(client, chat_body("flap")) for _ in range(n)))

    upstream.state.down.add("flap-up")
    failed = [asyncio.run(round_of(1))[0] for _ in range(BREAKER_THRESHOLD)]
    assert [o.status for o in failed] == [502] * BREAKER_THRESHOLD, failed
    assert len(upstream.state.requests) == BREAKER_THRESHOLD

    # Open: twenty concurrent callers are told to come back, and the upstream is not called.
    cooling = asyncio.run(round_of(20))
    assert {o.status for o in cooling} == {503}
    assert all("cooling down" in (o.error or {}).get("message", "") for o in cooling)
    retry_after = max(int(o.headers["retry-after"]) for o in cooling)
    assert 1 <= retry_after <= BREAKER_COOLDOWN + 1
    assert len(upstream.state.requests) == BREAKER_THRESHOLD

    # The upstream comes back; once the cooldown is over exactly one probe goes through, and its
    # success reopens the model to everyone.
    upstream.state.down.discard("flap-up")
    time.sleep(BREAKER_COOLDOWN + 0.1)
    half_open = asyncio.run(round_of(20))
    answered = [o for o in half_open if o.status == 200]
    assert len(answered) >= 1
    assert all(o.text == REPLY for o in answered)
    assert all(o.status == 503 and o.headers.get("retry-after") for o in half_open if o.status != 200)
    assert len(upstream.state.requests) == BREAKER_THRESHOLD + len(answered)
    recovered = asyncio.run(round_of(20))
    assert [o.status for o in recovered] == [200] * 20


def test_a_long_retry_after_is_passed_on_not_slept_through(
    gateway: RunningServer, upstream: MockUpstream
) -> None:
    # The upstream asks for an hour; the gateway must neither sleep through the caller's deadline
    # nor hide the advice behind a bare 502. The official SDK sees a 503 with Retry-After.
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.admin_key, max_retries=0, timeout=10)
    started = time.monotonic()
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="ratelimited", messages=chat_body("")["messages"])
    assert time.monotonic() - started < 1.5
    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_rate_limited"
    assert "429" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "3600"
    assert len(upstream.state.requests) == 1  # an hour's wait does not fit: no retry at all
