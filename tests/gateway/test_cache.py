"""The exact-match response cache: which requests share a key, and stored responses expiring, on both
counters backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fmops.counters import Counters
from fmops.counters.redis import RedisCounters
from fmops.gateway.cache import ResponseCache

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {
    "model": "small",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "temperature": 0.2,
    "max_tokens": 50,
}
RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "small",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hello ✓"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}


def key(body: dict[str, Any], project: str = "p1", alias: str = "small") -> str:
    return ResponseCache.key_for(project, alias, body)


def test_key_ignores_field_order_and_delivery_fields() -> None:
    base = key(BODY)
    assert base.startswith("cache:")
    assert len(base) == len("cache:") + 64
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in BODY["messages"]]
    assert key(reordered) == base
    same = [
        {**BODY, "stream": True, "stream_options": {"include_usage": True}},
        {**BODY, "user": "alice"},
        {**BODY, "metadata": {"ticket": "42"}, "store": True},
        {**BODY, "cache": {"ttl": 60}, "timeout": 5, "fallbacks": ["other"]},
        {**BODY, "model": "an-endpoint-name"},  # the resolved alias is what counts
        {**BODY, "max_tokens": 50.0},  # 50.0 and 50 are the same JSON number
        {**BODY, "seed": None},  # an unset field
    ]
    for body in same:
        assert key(body) == base, body


def test_key_differs_whenever_the_answer_could() -> None:
    base = key(BODY)
    different = [
        key({**BODY, "temperature": 0.3}),
        key({**BODY, "max_tokens": 51}),
        key({**BODY, "seed": 7}),
        key({**BODY, "messages": [*BODY["messages"], {"role": "user", "content": "again"}]}),
        key({**BODY, "messages": [{"role": "user", "content": "Hi"}]}),
        key(
            {
                **BODY,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            }
        ),
        key({**BODY, "response_format": {"type": "json_object"}}),
        key({**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        key(BODY, alias="large"),
        key(BODY, project="p2"),  # one project never sees another's answers
    ]
    assert base not in different
    assert len(set(different)) == len(different)


async def test_responses_round_trip_and_expire(counters: Counters) -> None:
    cache = ResponseCache(counters)
    k = key(BODY)
    assert await cache.get(k) is None
    await cache.put(k, RESPONSE, ttl_seconds=0.5)
    found = await cache.get(k)
    assert found == RESPONSE
    assert found is not RESPONSE
    found["model"] = "changed by the caller"
    assert await cache.get(k) == RESPONSE  # callers get a fresh copy every time
    await asyncio.sleep(0.7)
    assert await cache.get(k) is None


async def test_zero_ttl_stores_nothing_and_corrupt_entries_miss(counters: Counters) -> None:
    cache = ResponseCache(counters)
    await cache.put("cache:zero", RESPONSE, ttl_seconds=0)
    assert await cache.get("cache:zero") is None
    await counters.set_bytes("cache:broken", b"{not json", ttl_seconds=60)
    assert await cache.get("cache:broken") is None
    await counters.set_bytes("cache:list", b"[1, 2]", ttl_seconds=60)
    assert await cache.get("cache:list") is None


async def test_a_cache_store_that_is_down_is_a_miss() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        cache = ResponseCache(counters)
        await cache.put(key(BODY), RESPONSE, ttl_seconds=60)
        assert await cache.get(key(BODY)) is None
    finally:
        await counters.close()
