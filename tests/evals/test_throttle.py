"""The runner's adaptive limit: a 429 halves the calls in flight and pauses them; successes win it back."""

from __future__ import annotations

import asyncio

import pytest

from fmops.evals.runner import Throttle


@pytest.mark.anyio
async def test_a_429_halves_the_limit_pauses_everyone_and_successes_raise_it_again() -> None:
    loop = asyncio.get_running_loop()
    throttle = Throttle(16)
    throttle.rate_limited(0.1)
    assert throttle.limit == 8
    started = loop.time()
    await throttle.wait_turn(0)
    assert loop.time() - started >= 0.09  # everyone waits out the Retry-After
    blocked = asyncio.create_task(throttle.wait_turn(12))  # slot 12 is over the limit of 8
    await asyncio.sleep(0.1)
    assert not blocked.done()
    for _ in range(60):  # additive increase: +1/limit per success
        throttle.succeeded()
    assert 12 < throttle.limit < 16
    await asyncio.wait_for(blocked, 1)
    for _ in range(200):
        throttle.succeeded()
    assert throttle.limit == 16
    for _ in range(10):
        throttle.rate_limited(0)
    assert throttle.limit == 1  # never below one call in flight
    assert throttle.throttled == 11


def test_rate_limited_calls_are_retried_and_the_run_completes(world) -> None:
    world.mock.script(*[{"status": 429, "retry_after": 0}] * 3)
    run = world.run(
        {
            "name": "limited",
            "cases": [{"input": f"c{i}", "expected": "x"} for i in range(4)],
            "targets": [{"model": "mock-a"}],
            "scorers": [{"name": "regex", "config": {"pattern": "mock"}}],
            "concurrency": 2,
        }
    )
    target = run.summary["targets"][0]
    assert target["errors"] == 0
    assert target["score"]["mean"] == 1.0
