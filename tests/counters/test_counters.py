"""Both counters backends (in-process and Redis) against one contract: sliding windows that refuse
past their limit and say when to retry, all-or-nothing checks over several windows, atomicity under
many concurrent tasks, float counters with set-if-absent seeding, and TTLs; plus what only one
backend has (the in-process byte budget and sweeping, Redis key prefixes)."""

from __future__ import annotations

import asyncio
import math

import pytest

from fmops.counters import Counters, Hold, Increment, MemoryCounters, Window, make_counters
from fmops.counters.redis import RedisCounters
from fmops.errors import Unavailable
from fmops.settings import load_settings
from support.redisdb import REDIS_URL, redis_counters, redis_keys, unique_prefix

pytestmark = pytest.mark.anyio


# --- windows ------------------------------------------------------------------------------------


async def test_window_allows_up_to_the_limit_then_refuses_with_retry_after(counters: Counters) -> None:
    for expected in (1, 2, 3):
        result = await counters.hit_one("w", 1, seconds=60, limit=3)
        assert result.allowed
        assert result.usage == (pytest.approx(expected),)
    refused = await counters.hit_one("w", 1, seconds=60, limit=3)
    assert not refused.allowed
    assert refused.blocked == 0
    assert refused.usage == (pytest.approx(3),)
    assert 0 < refused.retry_after <= 120
    # Other keys are independent.
    assert (await counters.hit_one("other", 1, seconds=60, limit=3)).allowed


async def test_float_amounts_fill_a_window_exactly(counters: Counters) -> None:
    for _ in range(3):
        assert (await counters.hit_one("f", 0.1, seconds=60, limit=0.3)).allowed
    assert not (await counters.hit_one("f", 0.1, seconds=60, limit=0.3)).allowed


async def test_several_windows_are_all_or_nothing(counters: Counters) -> None:
    both = [Window("a", 1, 60, limit=5), Window("b", 1, 60, limit=1)]
    assert (await counters.hit(both)).allowed
    refused = await counters.hit(both)
    assert not refused.allowed
    assert refused.blocked == 1
    assert refused.usage == (pytest.approx(1), pytest.approx(1))
    # The refused call added nothing to "a" either.
    assert (await counters.hit_one("a", 0, seconds=60, limit=5)).usage == (pytest.approx(1),)


async def test_retry_after_is_when_the_window_accepts_again(counters: Counters) -> None:
    seconds = 0.6
    assert (await counters.hit_one("r", 2, seconds=seconds, limit=2)).allowed
    refused = await counters.hit_one("r", 1, seconds=seconds, limit=2)
    assert not refused.allowed
    # A full bucket must slide half out of the window before one more unit fits: between 0.5 and
    # 1.5 windows from now, depending on where in its bucket the first hit landed.
    assert seconds * 0.5 - 0.02 <= refused.retry_after <= seconds * 1.5 + 0.02
    await asyncio.sleep(refused.retry_after / 3)
    assert not (await counters.hit_one("r", 1, seconds=seconds, limit=2)).allowed
    await asyncio.sleep(refused.retry_after * 2 / 3 + 0.05)
    assert (await counters.hit_one("r", 1, seconds=seconds, limit=2)).allowed


async def test_an_amount_above_the_limit_can_never_fit(counters: Counters) -> None:
    refused = await counters.hit_one("big", 11, seconds=60, limit=10)
    assert not refused.allowed
    assert math.isinf(refused.retry_after)


async def test_exactly_the_limit_is_admitted_under_concurrency(counters: Counters) -> None:
    results = await asyncio.gather(*(counters.hit_one("c", 1, seconds=60, limit=50) for _ in range(300)))
    assert sum(r.allowed for r in results) == 50
    # Several windows at once: the tighter one decides, and no call is half-counted.
    pair = [Window("c1", 1, 60, limit=40), Window("c2", 1, 60, limit=25)]
    results = await asyncio.gather(*(counters.hit(pair) for _ in range(100)))
    assert sum(r.allowed for r in results) == 25
    assert (await counters.hit_one("c1", 0, seconds=60, limit=40)).usage == (pytest.approx(25),)


async def test_adjust_corrects_a_reservation_and_never_goes_below_zero(counters: Counters) -> None:
    assert (await counters.hit_one("t", 10, seconds=60, limit=10)).allowed
    await counters.adjust([Window("t", -4, 60)])
    assert (await counters.hit_one("t", 4, seconds=60, limit=10)).allowed
    assert not (await counters.hit_one("t", 1, seconds=60, limit=10)).allowed
    await counters.adjust([Window("t", -1000, 60)])
    assert (await counters.hit_one("t", 10, seconds=60, limit=10)).allowed


async def test_windows_expire(counters: Counters) -> None:
    assert (await counters.hit_one("e", 3, seconds=0.1, limit=3)).allowed
    await asyncio.sleep(0.25)  # two windows later, nothing of the old hits is left
    assert (await counters.hit_one("e", 3, seconds=0.1, limit=3)).usage == (pytest.approx(3),)


# --- floats and bytes ---------------------------------------------------------------------------


async def test_float_counters_add_and_report_missing_ones(counters: Counters) -> None:
    assert await counters.get_floats(["x", "y"]) == [None, None]
    assert await counters.add("x", 0.25) == pytest.approx(0.25)
    values = await counters.incr([Increment("x", 0.5), Increment("y", 2)])
    assert values == [pytest.approx(0.75), pytest.approx(2)]
    assert await counters.get_floats(["x", "y", "z"]) == [pytest.approx(0.75), pytest.approx(2), None]


async def test_seed_sets_only_a_missing_counter(counters: Counters) -> None:
    assert await counters.seed("s", 1.5)
    assert not await counters.seed("s", 99.0)
    await counters.add("s", 0.5)
    assert await counters.get_floats(["s"]) == [pytest.approx(2.0)]


async def test_seed_is_atomic_under_concurrency(counters: Counters) -> None:
    created = await asyncio.gather(*(counters.seed("once", float(i)) for i in range(50)))
    assert sum(created) == 1
    assert await counters.get_floats(["once"]) == [float(created.index(True))]


async def test_holds_admit_while_spend_plus_held_is_below_the_limit(counters: Counters) -> None:
    await counters.seed("spend", 6.0)
    # 50 racing holds of 3.0 under a limit of 10 with 6 spent: 6 < 10 holds, 9 < 10 holds, 12 refuses.
    results = await asyncio.gather(
        *(counters.hold([Hold("spend", "held", 3.0, 10.0, 60)]) for _ in range(50))
    )
    assert [blocked for blocked, _ in results].count(None) == 2
    assert await counters.get_floats(["held"]) == [pytest.approx(6.0)]
    # All or nothing over several holds; a hold given back (negative) frees its room.
    blocked, found = await counters.hold(
        [Hold("other", "held2", 1.0, 5.0, 60), Hold("spend", "held", 1, 10, 60)]
    )
    assert (blocked, found) == (1, [pytest.approx(0.0), pytest.approx(12.0)])
    assert await counters.get_floats(["held2"]) == [None]
    await counters.incr([Increment("held", -6.0, 60)])
    assert (await counters.hold([Hold("spend", "held", 1.0, 10.0, 60)]))[0] is None


async def test_float_counters_expire(counters: Counters) -> None:
    await counters.add("ttl", 1.0, ttl_seconds=0.5)
    assert await counters.seed("seeded", 1.0, ttl_seconds=0.5)
    assert await counters.get_floats(["ttl", "seeded"]) == [1.0, 1.0]
    await asyncio.sleep(0.7)
    assert await counters.get_floats(["ttl", "seeded"]) == [None, None]
    assert await counters.add("ttl", 2.0) == pytest.approx(2.0)  # starts again from zero


async def test_bytes_round_trip_expire_and_delete(counters: Counters) -> None:
    await counters.set_bytes("b", b"\x00payload\xff", ttl_seconds=0.5)
    await counters.set_bytes("keep", b"kept", ttl_seconds=60)
    assert await counters.get_bytes("b") == b"\x00payload\xff"
    await asyncio.sleep(0.7)
    assert await counters.get_bytes("b") is None
    assert await counters.get_bytes("never-set") is None
    await counters.delete(["keep"])
    assert await counters.get_bytes("keep") is None


# --- backend specifics --------------------------------------------------------------------------


async def test_memory_cache_bytes_are_bounded_least_recently_used_first() -> None:
    counters = MemoryCounters(max_bytes=1000)
    for i in range(3):
        await counters.set_bytes(f"k{i}", bytes(300), ttl_seconds=60)
    assert await counters.get_bytes("k0") is not None  # k0 is now the most recently used
    await counters.set_bytes("k3", bytes(300), ttl_seconds=60)
    assert counters.cached_bytes <= 1000
    assert await counters.get_bytes("k1") is None  # the least recently used went first
    assert all([await counters.get_bytes(k) is not None for k in ("k0", "k2", "k3")])
    for i in range(100):
        await counters.set_bytes(f"many{i}", bytes(250), ttl_seconds=60)
    assert counters.cached_bytes <= 1000
    await counters.set_bytes("huge", bytes(1001), ttl_seconds=60)
    assert await counters.get_bytes("huge") is None
    await counters.set_bytes("many99", bytes(10), ttl_seconds=60)  # replacing frees the old value
    assert counters.cached_bytes == 3 * 250 + 10


async def test_memory_sweeps_expired_entries() -> None:
    now = [1_000_000.0]
    counters = MemoryCounters(clock=lambda: now[0], sweep_seconds=10)
    for i in range(100):
        await counters.hit_one(f"w{i}", 1, seconds=1, limit=5)
        await counters.add(f"f{i}", 1, ttl_seconds=1)
        await counters.set_bytes(f"b{i}", b"x", ttl_seconds=1)
    await counters.add("lasting", 1)
    assert len(counters) == 301
    now[0] += 11
    await counters.get_floats(["lasting"])  # any call sweeps when it is due
    assert len(counters) == 1
    assert counters.cached_bytes == 0


@pytest.mark.redis
async def test_redis_keys_carry_the_prefix_and_prefixes_are_isolated() -> None:
    prefix = unique_prefix()
    async with redis_counters(prefix) as first, redis_counters() as second:
        await first.add("spend", 1.0)
        await first.hit_one("rpm", 1, seconds=60, limit=5)
        await first.set_bytes("cache", b"v", ttl_seconds=60)
        assert await second.get_floats(["spend"]) == [None]
        assert await second.get_bytes("cache") is None
        assert await redis_keys(prefix) == sorted(f"{prefix}{k}".encode() for k in ("spend", "rpm", "cache"))


@pytest.mark.redis
async def test_redis_replicas_share_windows() -> None:
    prefix = unique_prefix()
    async with redis_counters(prefix) as first, redis_counters(prefix) as second:
        results = await asyncio.gather(
            *(c.hit_one("shared", 1, seconds=60, limit=10) for c in [first, second] * 15)
        )
        assert sum(r.allowed for r in results) == 10


async def test_make_counters_picks_the_backend_from_settings(tmp_path: object) -> None:
    assert isinstance(make_counters(load_settings()), MemoryCounters)
    chosen = make_counters(load_settings({"redis_url": REDIS_URL, "redis_prefix": "custom:"}))
    try:
        assert isinstance(chosen, RedisCounters)
        assert chosen.prefix == "custom:"
    finally:
        await chosen.close()


async def test_an_unreachable_redis_is_a_503_not_a_crash() -> None:
    counters = RedisCounters("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(Unavailable) as caught:
            await counters.hit_one("w", 1, seconds=60, limit=5)
        assert caught.value.status_code == 503
        assert "Redis" in caught.value.message
        with pytest.raises(Unavailable):
            await counters.get_floats(["x"])
    finally:
        await counters.close()
