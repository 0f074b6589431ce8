"""Unit tests of the resilience wrapper: the circuit breaker and call_with_fallbacks, with a fake upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fmops.catalog import ModelEntry
from fmops.gateway.routing import (
    Attempt,
    CircuitBreaker,
    UpstreamFailed,
    backoff_delay,
    call_with_fallbacks,
)
from fmops.providers.base import ProviderError, ProviderTimeout


def entry(alias: str, *, retries: int = 0, timeout: float = 10.0) -> ModelEntry:
    return ModelEntry(
        alias=alias, provider="openai", provider_model=alias, max_retries=retries, timeout_seconds=timeout
    )


Step = Callable[[float], Awaitable[Any]] | BaseException | str


class FakeUpstream:
    """Per alias, a list of steps: an exception to raise, a coroutine function of the timeout, or a reply."""

    def __init__(self, steps: dict[str, list[Step]]) -> None:
        self.steps = steps
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, model: ModelEntry, timeout: float) -> str:
        self.calls.append((model.alias, timeout))
        queue = self.steps.get(model.alias) or [f"reply from {model.alias}"]
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, str):
            return step
        result: str = await step(timeout)
        return result


def run(
    chain: list[ModelEntry],
    upstream: FakeUpstream,
    *,
    deadline_in: float = 30.0,
    breaker: CircuitBreaker | None = None,
) -> tuple[str, ModelEntry, list[Attempt]]:
    async def go() -> tuple[str, ModelEntry, list[Attempt]]:
        return await call_with_fallbacks(
            chain,
            upstream,
            deadline=time.monotonic() + deadline_in,
            breaker=breaker or CircuitBreaker(),
            breaker_key=lambda e: e.alias,
        )

    return asyncio.run(go())


def retryable(status: int = 503, retry_after: float | None = None) -> ProviderError:
    return ProviderError(
        f"upstream returned {status}", status=status, retryable=True, retry_after=retry_after
    )


async def hang(timeout: float) -> str:
    """What a provider does with an upstream that never answers: wait out its timeout, then fail."""
    await asyncio.sleep(timeout)
    raise ProviderTimeout()


# --- circuit breaker --------------------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30)
    assert breaker.allow("a", now=0)
    breaker.failure("a", now=0)
    breaker.failure("a", now=0)
    assert breaker.allow("a", now=1)
    assert breaker.cooling_for("a", now=1) == 0
    breaker.failure("a", now=1)
    assert not breaker.allow("a", now=2)
    assert breaker.cooling_for("a", now=2) == pytest.approx(29)
    assert breaker.allow("b", now=2)  # per upstream


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=30)
    breaker.failure("a", now=0)
    breaker.success("a")
    breaker.failure("a", now=0)
    assert breaker.allow("a", now=0)  # not two consecutive failures


def test_breaker_half_open_lets_one_probe_through_and_recovers() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.failure("a", now=0)
    breaker.failure("a", now=0)
    assert not breaker.allow("a", now=9.9)
    assert breaker.allow("a", now=10.1)  # the probe
    assert not breaker.allow("a", now=10.2)  # only one at a time
    assert not breaker.allow("a", now=50)  # still waiting for the probe's verdict
    breaker.success("a")
    assert all(breaker.allow("a", now=50) for _ in range(5))
    assert breaker.cooling_for("a", now=50) == 0


def test_breaker_failed_probe_opens_it_again() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    breaker.failure("a", now=0)
    breaker.failure("a", now=0)
    assert breaker.allow("a", now=11)
    breaker.failure("a", now=11)
    assert not breaker.allow("a", now=12)
    assert breaker.cooling_for("a", now=12) == pytest.approx(9)
    assert breaker.allow("a", now=21.5)


def test_breaker_abandoned_probe_frees_the_slot() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=10)
    breaker.failure("a", now=0)
    assert breaker.allow("a", now=11)
    breaker.abandon("a")
    assert breaker.allow("a", now=11)


def test_backoff_delay() -> None:
    assert backoff_delay(0, 2.5) == 2.5
    assert backoff_delay(3, 0) == 0
    assert backoff_delay(0, 3600) == 60  # a hostile Retry-After is capped
    for attempt in range(8):
        delay = backoff_delay(attempt, None)
        assert 0 < delay <= 8.0
        assert delay >= min(8.0, 0.2 * 2**attempt) / 2


# --- call_with_fallbacks ----------------------------------------------------------------------


def test_first_success_is_returned() -> None:
    upstream = FakeUpstream({})
    result, answered, attempts = run([entry("a"), entry("b")], upstream)
    assert (result, answered.alias, attempts) == ("reply from a", "a", [])
    assert [alias for alias, _ in upstream.calls] == ["a"]


def test_retryable_errors_are_retried_then_fall_back() -> None:
    upstream = FakeUpstream({"a": [retryable(500), retryable(503), retryable(502)], "b": ["from b"]})
    breaker = CircuitBreaker(threshold=10)
    result, answered, attempts = run([entry("a", retries=2), entry("b")], upstream, breaker=breaker)
    assert (result, answered.alias) == ("from b", "b")
    assert [alias for alias, _ in upstream.calls] == ["a", "a", "a", "b"]
    assert [(a.model, a.status) for a in attempts] == [("a", 500), ("a", 503), ("a", 502)]


def test_retry_then_success_on_the_same_model() -> None:
    upstream = FakeUpstream({"a": [retryable(429, retry_after=0), "second try"]})
    result, answered, attempts = run([entry("a", retries=1), entry("b")], upstream)
    assert (result, answered.alias) == ("second try", "a")
    assert len(attempts) == 1


def test_non_retryable_error_is_raised_at_once() -> None:
    bad = ProviderError("upstream returned 400: bad tool schema", status=400)
    upstream = FakeUpstream({"a": [bad]})
    breaker = CircuitBreaker(threshold=1)
    with pytest.raises(ProviderError) as caught:
        run([entry("a", retries=3), entry("b")], upstream, breaker=breaker)
    assert caught.value is bad
    assert [alias for alias, _ in upstream.calls] == ["a"]  # no retry, no fallback
    assert breaker.allow("a")  # the caller's mistake does not cool the upstream down


def test_deadline_bounds_each_attempt_and_the_whole_call() -> None:
    upstream = FakeUpstream({"a": [hang]})
    started = time.monotonic()
    with pytest.raises(UpstreamFailed) as caught:
        run([entry("a", retries=5, timeout=10), entry("b", timeout=10)], upstream, deadline_in=0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert "deadline" in caught.value.message
    (call,) = upstream.calls
    assert call[1] <= 0.3  # the attempt got what was left, not the model's 10 s


def test_model_timeout_caps_each_attempt() -> None:
    upstream = FakeUpstream({"a": [hang]})
    with pytest.raises(UpstreamFailed):
        run([entry("a", retries=1, timeout=0.1)], upstream, deadline_in=5)
    assert [round(t, 3) for _, t in upstream.calls] == [0.1, 0.1]


def test_retry_after_is_honoured() -> None:
    upstream = FakeUpstream({"a": [retryable(429, retry_after=0.3), "after waiting"]})
    started = time.monotonic()
    result, _, _ = run([entry("a", retries=1)], upstream)
    assert result == "after waiting"
    assert time.monotonic() - started >= 0.3


def test_retry_after_beyond_the_deadline_moves_on_at_once() -> None:
    upstream = FakeUpstream({"a": [retryable(429, retry_after=30)], "b": ["from b"]})
    started = time.monotonic()
    result, answered, _ = run([entry("a", retries=3), entry("b")], upstream, deadline_in=5)
    assert (result, answered.alias) == ("from b", "b")
    assert time.monotonic() - started < 1.0
    assert [alias for alias, _ in upstream.calls] == ["a", "b"]


def test_all_failing_is_502_naming_each_model() -> None:
    upstream = FakeUpstream({"a": [retryable(500)], "b": [retryable(429, retry_after=0)]})
    with pytest.raises(UpstreamFailed) as caught:
        run([entry("a", retries=1), entry("b")], upstream, breaker=CircuitBreaker(threshold=10))
    assert caught.value.status_code == 502
    assert "a: upstream returned 500" in caught.value.message
    assert "b: upstream returned 429" in caught.value.message
    assert [(a.model, a.status) for a in caught.value.attempts] == [("a", 500), ("a", 500), ("b", 429)]


def test_open_breaker_skips_the_model() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=30)
    upstream = FakeUpstream({"a": [retryable(500)]})
    with pytest.raises(UpstreamFailed):
        run([entry("a", retries=5)], upstream, breaker=breaker)
    assert len(upstream.calls) == 2  # stopped retrying once the breaker opened

    result, answered, attempts = run([entry("a"), entry("b")], upstream, breaker=breaker)
    assert (result, answered.alias) == ("reply from b", "b")
    assert len(upstream.calls) == 3  # a was not called
    assert attempts[0].status == 503
    assert "cooling" in attempts[0].error

    with pytest.raises(UpstreamFailed) as caught:
        run([entry("a")], upstream, breaker=breaker)
    assert caught.value.status_code == 503
    assert caught.value.retry_after is not None
    assert 29 <= caught.value.retry_after <= 30


def test_cancelled_probe_does_not_wedge_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=0.05)
    breaker.failure("a")
    time.sleep(0.06)

    async def go() -> None:
        upstream = FakeUpstream({"a": [hang]})
        task = asyncio.ensure_future(
            call_with_fallbacks(
                [entry("a")],
                upstream,
                deadline=time.monotonic() + 10,
                breaker=breaker,
                breaker_key=lambda e: e.alias,
            )
        )
        await asyncio.sleep(0.05)
        assert upstream.calls  # the probe is in flight
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert breaker.allow("a")  # another request may probe
