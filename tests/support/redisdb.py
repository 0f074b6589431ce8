"""Throw-away Redis namespaces: each test gets its own key prefix, deleted after the test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from fmops.counters.redis import RedisCounters
from support.services import unavailable

REDIS_URL = os.environ.get("FMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"fmops-test:{uuid.uuid4().hex[:12]}:"


async def _drop(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_counters(prefix: str | None = None) -> AsyncIterator[RedisCounters]:
    """RedisCounters under a fresh prefix (or `prefix`, to share one between "replicas")."""
    prefix = prefix or unique_prefix()
    counters = RedisCounters(REDIS_URL, prefix=prefix)
    try:
        await counters.ping()
    except Exception as exc:
        await counters.close()
        unavailable(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    try:
        yield counters
    finally:
        await counters.close()
        await _drop(prefix)


async def redis_keys(prefix: str) -> list[bytes]:
    client = Redis.from_url(REDIS_URL)
    try:
        return sorted([k async for k in client.scan_iter(match=prefix + "*", count=1000)])
    finally:
        await client.aclose()
