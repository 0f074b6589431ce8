"""Resilience around provider calls: deadlines, bounded retries with backoff and Retry-After,
ordered fallbacks, and a circuit breaker that cools a failing upstream down and lets it recover.

Fallback and retry are a wrapper around the provider call, not branches inside each provider.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fmops.catalog import ModelEntry
from fmops.errors import FmopsError
from fmops.providers.base import ProviderError

T = TypeVar("T")
# The longest Retry-After the gateway sleeps through itself. An upstream asking for more is out for
# a while: fallbacks are tried at once, else the caller gets its advice (503 + Retry-After) now
# instead of a connection held open for minutes.
MAX_RETRY_WAIT_S = 10.0


class UpstreamFailed(FmopsError):
    """Every model in the chain failed (or was cooling down): 502/503/504 with the reasons."""

    error_type = "upstream_error"

    def __init__(
        self,
        message: str,
        status: int,
        retry_after: float | None = None,
        attempts: list[Attempt] | None = None,
    ) -> None:
        super().__init__(message, code="upstream_error" if status != 504 else "upstream_timeout")
        self.status_code = status
        self.retry_after = retry_after
        self.attempts = attempts or []  # for the span: what was tried, and why each failed


@dataclass
class BreakerState:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


@dataclass
class CircuitBreaker:
    """Per upstream: after `threshold` consecutive failures it opens for `cooldown` seconds;
    then one probe request is let through, and a success closes it again."""

    threshold: int = 5
    cooldown: float = 30.0
    _states: dict[str, BreakerState] = field(default_factory=dict)

    def allow(self, key: str, now: float | None = None) -> bool:
        state = self._states.get(key)
        if state is None or state.failures < self.threshold:
            return True
        now = time.monotonic() if now is None else now
        if now < state.open_until or state.probing:
            return False
        state.probing = True  # half-open: one request decides
        return True

    def success(self, key: str) -> None:
        self._states.pop(key, None)

    def abandon(self, key: str) -> None:
        """A call ended without a verdict (cancelled, or an unexpected error): free its probe slot,
        so a half-open upstream is not left waiting for a probe that will never report."""
        state = self._states.get(key)
        if state is not None:
            state.probing = False

    def failure(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        state = self._states.setdefault(key, BreakerState())
        state.failures += 1
        state.probing = False
        if state.failures >= self.threshold:
            state.open_until = now + self.cooldown

    def cooling_for(self, key: str, now: float | None = None) -> float:
        state = self._states.get(key)
        if state is None or state.failures < self.threshold:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, state.open_until - now)


def backoff_delay(attempt: int, retry_after: float | None, base: float = 0.2, cap: float = 8.0) -> float:
    if retry_after is not None:
        return min(retry_after, 60.0)
    exponential: float = base * float(2**attempt)
    return min(cap, exponential) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto


@dataclass
class Attempt:
    model: str
    error: str
    status: int
    retry_after: float | None = None  # what the upstream asked for (429/503 Retry-After)


async def call_with_fallbacks(
    chain: list[ModelEntry],
    call: Callable[[ModelEntry, float], Awaitable[T]],
    *,
    deadline: float,
    breaker: CircuitBreaker,
    breaker_key: Callable[[ModelEntry], str],
) -> tuple[T, ModelEntry, list[Attempt]]:
    """Try each model in order, retrying retryable errors, within one overall deadline.

    `call(entry, timeout)` performs one attempt. A non-retryable error (the caller's mistake) is
    raised at once. Returns the result, the model that answered, and the failed attempts.
    """
    attempts: list[Attempt] = []
    cooling: list[float] = []
    for entry in chain:
        key = breaker_key(entry)
        if not breaker.allow(key):
            cooling.append(breaker.cooling_for(key))
            attempts.append(Attempt(entry.alias, "cooling down after repeated failures", 503))
            continue
        for attempt in range(entry.max_retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                result = await call(entry, min(entry.timeout_seconds, remaining))
            except ProviderError as exc:
                if not exc.retryable:
                    breaker.success(key)  # the upstream answered; the request was at fault
                    raise
                breaker.failure(key)
                attempts.append(Attempt(entry.alias, exc.message, exc.status, exc.retry_after))
                if not breaker.allow(key) or attempt == entry.max_retries:
                    break
                delay = backoff_delay(attempt, exc.retry_after)
                if delay > MAX_RETRY_WAIT_S or time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
                continue
            except BaseException:
                breaker.abandon(key)
                raise
            breaker.success(key)
            return result, entry, attempts
        if time.monotonic() >= deadline:
            break
    raise _exhausted(attempts, cooling, deadline)


def _exhausted(attempts: list[Attempt], cooling: list[float], deadline: float) -> UpstreamFailed:
    if attempts and all(a.status == 503 and a.error.startswith("cooling") for a in attempts):
        wait = min(cooling) if cooling else 30.0
        return UpstreamFailed(
            "every model for this request is cooling down after repeated upstream failures; retry later",
            503,
            retry_after=max(1.0, wait),
            attempts=attempts,
        )
    called = [a for a in attempts if not a.error.startswith("cooling")]
    if called and all(a.status == 429 for a in called):
        # Every upstream asked us to slow down: pass their advice on rather than a bare 502, so
        # the caller's SDK waits as long as the provider asked.
        hints = [a.retry_after for a in called if a.retry_after is not None]
        limited = UpstreamFailed(
            f"the upstream rate-limited every attempt ({called[-1].model}: {called[-1].error});"
            " retry after the time in Retry-After",
            503,
            retry_after=max(1.0, min(hints)) if hints else None,
            attempts=attempts,
        )
        limited.code = "upstream_rate_limited"
        return limited
    timed_out = time.monotonic() >= deadline or (attempts and attempts[-1].status == 504)
    tried = "; ".join(f"{a.model}: {a.error}" for a in attempts[-5:]) or "no attempt fit in the deadline"
    if timed_out:
        return UpstreamFailed(
            f"the model did not answer within the request's deadline ({tried})", 504, attempts=attempts
        )
    return UpstreamFailed(
        f"the upstream failed after retries and fallbacks ({tried})", 502, attempts=attempts
    )
