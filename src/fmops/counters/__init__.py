"""Counters and cache storage for rate limits, budgets and cached responses.

`make_counters(settings)` picks the backend: Redis when `FMOPS_REDIS_URL` is set (shared by every
replica), else in this process.
"""

from __future__ import annotations

from fmops.counters.base import Counters, Hold, Increment, Window, WindowResult
from fmops.counters.memory import MemoryCounters
from fmops.settings import Settings


def make_counters(settings: Settings) -> Counters:
    if settings.redis_url:
        try:
            from fmops.counters.redis import RedisCounters
        except ImportError as exc:  # pragma: no cover - depends on the install
            from fmops.errors import ConfigError

            raise ConfigError(
                "FMOPS_REDIS_URL is set but the redis client is not installed: pip install 'fmops[redis]'"
            ) from exc
        return RedisCounters(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryCounters()


__all__ = ["Counters", "Hold", "Increment", "MemoryCounters", "Window", "WindowResult", "make_counters"]
