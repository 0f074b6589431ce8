"""Counters in Redis: shared by every gateway replica.

Windows are hashes `{b: bucket index, p: previous total, c: current total}` updated by Lua
scripts, so a check-and-add over several windows is one atomic round trip. Time comes from the
Redis server (`TIME`), so replicas with drifting clocks still agree on the buckets. Float
counters are `INCRBYFLOAT` strings; cached bytes are plain strings with a TTL, evicted by the
server's own `maxmemory` policy. Every key starts with `prefix`, so deployments (and tests) can
share one Redis. The scripts touch several keys at once, so the keys of one deployment must live
on one Redis node (a single server or a primary with replicas, not a sharded cluster).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from fmops.counters.base import Counters, Hold, Increment, Window, WindowResult, retry_after
from fmops.errors import Unavailable

# Shared by both scripts: the state of window i (1-based) as seen now, times in microseconds.
_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function state(i, w)
  local index = math.floor(now / w)
  local s = redis.call('HMGET', KEYS[i], 'b', 'p', 'c')
  local b = tonumber(s[1])
  local p, c = 0, 0
  if b == index then
    p = tonumber(s[2]) or 0
    c = tonumber(s[3]) or 0
  elseif b == index - 1 then
    p = tonumber(s[3]) or 0
  end
  return index, p, c, now / w - index
end
local function fmt(x)
  return string.format('%.17g', x)
end
local function store(i, w, index, p, c)
  redis.call('HSET', KEYS[i], 'b', fmt(index), 'p', fmt(p), 'c', fmt(c))
  redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil(((index + 2) * w - now) / 1000)))
end
"""

# ARGV: amount, limit, window in microseconds, for each key.
# Returns {allowed, blocked (1-based, 0 if none), previous, current, fraction, usage...}.
_HIT = (
    _STATE
    + """
local n = #KEYS
local states, usage = {}, {}
local blocked = 0
for i = 1, n do
  local amount, limit, w = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local index, p, c, fraction = state(i, w)
  states[i] = {index, p, c, fraction, amount, w}
  usage[i] = p * (1 - fraction) + c
  if blocked == 0 and usage[i] + amount > limit + 1e-9 then
    blocked = i
  end
end
local out = {}
if blocked > 0 then
  local s = states[blocked]
  out = {0, blocked, fmt(s[2]), fmt(s[3]), fmt(s[4])}
  for i = 1, n do out[5 + i] = fmt(usage[i]) end
  return out
end
out = {1, 0, '0', '0', '0'}
for i = 1, n do
  local s = states[i]
  store(i, s[6], s[1], s[2], s[3] + s[5])
  out[5 + i] = fmt(usage[i] + s[5])
end
return out
"""
)

# ARGV: amount, window in microseconds, for each key.
_ADJUST = (
    _STATE
    + """
for i = 1, #KEYS do
  local amount, w = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local index, p, c = state(i, w)
  store(i, w, index, p, math.max(c + amount, 0))
end
return 0
"""
)

# KEYS: spend, hold for each; ARGV: amount, limit, ttl in ms for each.
# Returns {blocked (1-based, 0 if none), spend + held for each...}.
_HOLD = """
local n = #KEYS / 2
local found, out = {}, {0}
local blocked = 0
for i = 1, n do
  local spend = tonumber(redis.call('GET', KEYS[2*i-1]) or '0') or 0
  local held = tonumber(redis.call('GET', KEYS[2*i]) or '0') or 0
  found[i] = spend + math.max(held, 0)
  out[i + 1] = string.format('%.17g', found[i])
  if blocked == 0 and found[i] >= tonumber(ARGV[3*i-1]) - 1e-9 then
    blocked = i
  end
end
if blocked > 0 then
  out[1] = blocked
  return out
end
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[2*i], ARGV[3*i-2])
  redis.call('PEXPIRE', KEYS[2*i], ARGV[3*i])
end
return out
"""

_MAX_LIMIT = "1e308"


def _micros(seconds: float) -> str:
    return str(max(1, round(seconds * 1_000_000)))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@contextmanager
def _reachable() -> Iterator[None]:
    """Redis errors become Unavailable (503, retry later): limits fail closed, never silently open."""
    try:
        yield
    except RedisError as exc:
        raise Unavailable(
            f"the counters store (Redis, FMOPS_REDIS_URL) is unavailable: {type(exc).__name__}; retry shortly"
        ) from exc


class RedisCounters(Counters):
    def __init__(self, url: str, *, prefix: str = "fmops:", max_connections: int = 64) -> None:
        self.prefix = prefix
        # A blocking pool makes a burst of calls wait for a free connection instead of failing.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=5,
            socket_connect_timeout=5,
            socket_timeout=5,
            health_check_interval=30,
        )
        self._client: Redis = Redis.from_pool(pool)
        self._hit = self._client.register_script(_HIT)
        self._adjust = self._client.register_script(_ADJUST)
        self._hold = self._client.register_script(_HOLD)

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def ping(self) -> None:
        """Raise if Redis cannot be reached."""
        with _reachable():
            await self._client.ping()

    async def hit(self, windows: Sequence[Window]) -> WindowResult:
        args: list[str] = []
        for w in windows:
            limit = _MAX_LIMIT if math.isinf(w.limit) else repr(float(w.limit))
            args += [repr(float(w.amount)), limit, _micros(w.seconds)]
        with _reachable():
            reply: list[Any] = await self._hit(keys=[self._k(w.key) for w in windows], args=args)
        usage = tuple(float(u) for u in reply[5:])
        if int(reply[0]) == 1:
            return WindowResult(True, usage)
        i = int(reply[1]) - 1
        window = windows[i]
        previous, current, fraction = float(reply[2]), float(reply[3]), float(reply[4])
        wait = retry_after(previous, current, fraction, window.amount, window.limit, window.seconds)
        return WindowResult(False, usage, i, wait)

    async def adjust(self, windows: Sequence[Window]) -> None:
        if not windows:
            return
        args: list[str] = []
        for w in windows:
            args += [repr(float(w.amount)), _micros(w.seconds)]
        with _reachable():
            await self._adjust(keys=[self._k(w.key) for w in windows], args=args)

    async def incr(self, increments: Sequence[Increment]) -> list[float]:
        if not increments:
            return []
        pipe = self._client.pipeline(transaction=False)
        for item in increments:
            pipe.incrbyfloat(self._k(item.key), item.amount)
            if item.ttl_seconds is not None:
                pipe.pexpire(self._k(item.key), _ms(item.ttl_seconds))
        with _reachable():
            replies = await pipe.execute()
        values, i = [], 0
        for item in increments:
            values.append(float(replies[i]))
            i += 1 if item.ttl_seconds is None else 2
        return values

    async def hold(self, holds: Sequence[Hold]) -> tuple[int | None, list[float]]:
        if not holds:
            return None, []
        keys: list[str] = []
        args: list[str] = []
        for h in holds:
            keys += [self._k(h.spend_key), self._k(h.hold_key)]
            args += [repr(float(h.amount)), repr(float(h.limit)), str(_ms(h.ttl_seconds))]
        with _reachable():
            reply: list[Any] = await self._hold(keys=keys, args=args)
        blocked = int(reply[0])
        return (blocked - 1 if blocked else None), [float(v) for v in reply[1:]]

    async def get_floats(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        with _reachable():
            replies = await self._client.mget([self._k(k) for k in keys])
        return [None if r is None else float(r) for r in replies]

    async def seed(self, key: str, value: float, ttl_seconds: float | None = None) -> bool:
        px = _ms(ttl_seconds) if ttl_seconds is not None else None
        with _reachable():
            return bool(await self._client.set(self._k(key), repr(float(value)), nx=True, px=px))

    async def get_bytes(self, key: str) -> bytes | None:
        with _reachable():
            value = await self._client.get(self._k(key))
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def set_bytes(self, key: str, value: bytes, ttl_seconds: float) -> None:
        with _reachable():
            if ttl_seconds <= 0:
                await self._client.delete(self._k(key))
                return
            await self._client.set(self._k(key), value, px=_ms(ttl_seconds))

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            with _reachable():
                await self._client.delete(*(self._k(k) for k in keys))

    async def close(self) -> None:
        await self._client.aclose()
