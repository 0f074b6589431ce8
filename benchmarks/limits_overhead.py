"""What limits, budgets and the cache add to each gateway request, measured in one process.

For each counters backend (in-process; Redis when reachable) it times the work the gateway does per
call with every limit switched on (key and project RPM, TPM and budgets):

    admit -> cache key + lookup (a miss) -> settle

side by side with the same loop where nothing is limited or cached (the peer: what the gateway
pays when limits are off). Prints microseconds per request (mean, p50, p99).

    .venv/bin/python benchmarks/limits_overhead.py [--requests 20000] [--redis redis://127.0.0.1:6379/0]

Raw figures: benchmarks/results/limits_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from _harness import load, save_result

from fmops.auth import Principal, Role
from fmops.counters import Counters, MemoryCounters
from fmops.gateway.cache import ResponseCache
from fmops.gateway.limits import Limits
from fmops.store import Store, upgrade

BODY = {
    "model": "small",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "What is the capital of France? " * 8},
    ],
    "temperature": 0.2,
    "max_tokens": 128,
}

UNLIMITED = Principal("k" * 32, "u" * 32, "bench", "p" * 32, "bench", Role.consumer)
LIMITED = Principal(
    "k" * 32,
    "u" * 32,
    "bench",
    "p" * 32,
    "bench",
    Role.consumer,
    key_rpm=1_000_000_000,
    key_tpm=1_000_000_000,
    key_budget=1e12,
    key_budget_period="month",
    project_rpm=1_000_000_000,
    project_tpm=1_000_000_000,
    project_budget=1e12,
    project_budget_period="day",
)


def one_request(
    limits: Limits, cache: ResponseCache | None, principal: Principal
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        admission = await limits.admit(principal, 300)
        if cache is not None:
            key = cache.key_for(principal.project_id, "small", BODY)
            await cache.get(key)
        await limits.settle(principal, 250, 40, 0.00042, admission)

    return run


async def measure(run: Callable[[], Awaitable[None]], requests: int) -> tuple[list[float], float]:
    """Wall time of each request (µs), and the mean CPU time of this thread per request (µs).

    CPU time stays meaningful on a busy machine, where wall time also counts waiting for a core;
    with Redis most of the wall time is the round trips.
    """
    for _ in range(min(1000, requests)):  # warm up: seed spend from SQL, fill caches
        await run()
    samples = []
    clock = time.perf_counter_ns
    cpu_start = time.thread_time_ns()
    for _ in range(requests):
        start = clock()
        await run()
        samples.append((clock() - start) / 1000)
    return samples, (time.thread_time_ns() - cpu_start) / 1000 / requests


def describe(name: str, measured: tuple[list[float], float]) -> str:
    samples, cpu = measured
    ordered = sorted(samples)
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
    return (
        f"{name:<34} wall mean {statistics.fmean(samples):7.1f}  p50 {p50:7.1f}  p99 {p99:8.1f}"
        f"   cpu mean {cpu:6.1f}  (µs)"
    )


async def bench(backend: str, counters: Counters, store: Store, requests: int) -> dict[str, object]:
    limits = Limits(counters, store)
    cache = ResponseCache(counters)
    peer = await measure(one_request(limits, None, UNLIMITED), requests)
    full = await measure(one_request(limits, cache, LIMITED), requests)
    print(describe(f"{backend}: limits off, no cache", peer))
    print(describe(f"{backend}: all limits + cache lookup", full))
    wall = statistics.median(full[0]) - statistics.median(peer[0])
    print(f"{backend}: added per request {wall:.1f} µs wall (p50), {full[1] - peer[1]:.1f} µs cpu (mean)\n")

    def summary(measured: tuple[list[float], float]) -> dict[str, float]:
        ordered = sorted(measured[0])
        return {
            "wall_mean_us": statistics.fmean(ordered),
            "wall_p50_us": ordered[len(ordered) // 2],
            "wall_p99_us": ordered[int(len(ordered) * 0.99)],
            "cpu_mean_us": measured[1],
        }

    return {
        "requests": requests,
        "limits_off_no_cache": summary(peer),
        "all_limits_and_cache": summary(full),
        "added_wall_p50_us": wall,
        "added_cpu_mean_us": full[1] - peer[1],
    }


async def drop_keys(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    load_before = load()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(store)
        results["memory"] = await bench("memory", MemoryCounters(), store, args.requests)
        try:
            from fmops.counters.redis import RedisCounters

            redis = RedisCounters(args.redis, prefix=f"fmops-bench:{uuid.uuid4().hex[:8]}:")
            await redis.ping()
        except Exception as exc:
            print(f"redis: skipped, {args.redis} not reachable ({type(exc).__name__})")
            results["redis"] = f"skipped: not reachable ({type(exc).__name__})"
        else:
            try:
                results["redis"] = await bench("redis", redis, store, max(args.requests // 4, 1000))
            finally:
                await redis.close()
                await drop_keys(args.redis, redis.prefix)
        store.dispose()
    save_result("limits_overhead", results, load_before=load_before)


if __name__ == "__main__":
    asyncio.run(main())
