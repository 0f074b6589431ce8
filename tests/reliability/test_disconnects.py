"""Issue 7, item 14: clients that hang up mid-call leave nothing behind in the server.

Clients disconnect at three moments: mid-stream (after the first words), while a stream is being
opened (before its first chunk), and while a plain call waits for the upstream. The server's open
file descriptors (from /proc), its event-loop tasks (the `fmops_asyncio_tasks` gauge) and the
upstream's open streams must come back to where they were, round after round; the upstream must
see every abandoned stream closed, and every abandoned call is traced as a client disconnect.

100 disconnects in the suite; FMOPS_TEST_LONG=1 runs 1,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections import Counter

import httpx

from support.gateway import wait_for
from support.mock_upstream import MockUpstream
from support.procstats import Usage, metric, usage
from support.reliability import LONG, chat_body
from support.server import RunningServer

DISCONNECTS = 1000 if LONG else 100
ROUNDS = 2
CONCURRENCY = 10
KINDS = ("mid-stream", "before-first-chunk", "waiting")
POOL = 8 + 16  # the most SQLite connections the store's pool opens (fmops.store.engine)


async def _hang_up(client: httpx.AsyncClient, upstream: MockUpstream, kind: str, tag: str) -> None:
    """Start a call and abandon it at the moment `kind` names (the connection is closed)."""
    if kind == "mid-stream":
        body = chat_body("drip", stream=True)
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if '"content":"w' in line:
                    return  # leaving the block closes the connection mid-stream
        raise AssertionError("the stream ended before the client could hang up")
    # The upstream takes 2 s; hang up as soon as the gateway is waiting on it for this call.
    body = chat_body("late", stream=kind == "before-first-chunk")
    body["messages"] = [{"role": "user", "content": tag}]
    request = asyncio.ensure_future(client.post("/v1/chat/completions", json=body))
    while not any(r["body"]["messages"][-1]["content"] == tag for r in reversed(upstream.state.requests)):
        assert not request.done(), "the call ended before it reached the upstream"
        await asyncio.sleep(0.01)
    request.cancel()  # httpx closes the connection of a cancelled request
    with contextlib.suppress(asyncio.CancelledError):
        await request


async def _round(server: RunningServer, upstream: MockUpstream, n: int) -> Counter[str]:
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    limits = httpx.Limits(max_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, timeout=10) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int, kind: str) -> None:
            async with gate:
                await _hang_up(client, upstream, kind, f"call {i} {uuid.uuid4().hex}")

        await asyncio.gather(*(one(i, kind) for i, kind in enumerate(kinds)))
    return Counter(kinds)


def _settled(
    server: RunningServer, upstream: MockUpstream, admin: httpx.Client, tasks_at_most: float = 0
) -> tuple[Usage, float]:
    """Wait until the abandoned calls are wound down (up to a few seconds); then what the server holds."""
    assert wait_for(lambda: upstream.state.open_streams == 0, timeout=5), upstream.state.open_streams
    tasks: list[float] = []
    wait_for(lambda: tasks.append(metric(admin, "fmops_asyncio_tasks")) or tasks[-1] <= tasks_at_most, 3)
    return usage(server.proc.pid), tasks[-1]


def _without_database(u: Usage) -> int:
    """Descriptors other than SQLite's: the pool opens up to POOL connections (2 each) by design."""
    return u.fds - sum(1 for f in u.files if "fmops.db" in f)


def _disconnected_spans(server: RunningServer) -> Counter[str]:
    with sqlite3.connect(server.home / "fmops.db", timeout=5) as conn:
        rows = conn.execute(
            "SELECT model, status_message FROM spans WHERE status_message LIKE 'client disconnected%'"
        ).fetchall()
    return Counter(f"{model}: {message}" for model, message in rows)


def test_clients_hanging_up_leak_no_tasks_connections_or_descriptors(
    gateway: RunningServer, upstream: MockUpstream
) -> None:
    # A first round warms up what is built lazily (providers, pools, threads) before we count.
    # The gateway is shared by the package: count from what earlier tests left, or a warm-up span
    # landing after the snapshot would be counted as one of ours.
    warm_up = 2 * CONCURRENCY
    earlier = sum(_disconnected_spans(gateway).values())
    asyncio.run(_round(gateway, upstream, warm_up))
    assert wait_for(lambda: sum(_disconnected_spans(gateway).values()) >= earlier + warm_up)
    before_spans = _disconnected_spans(gateway)
    with gateway.client() as admin:
        baseline, baseline_tasks = _settled(gateway, upstream, admin)  # tasks: one sample
        done: Counter[str] = Counter()
        after: list[tuple[Usage, float]] = []
        for _ in range(ROUNDS):
            done += asyncio.run(_round(gateway, upstream, DISCONNECTS // ROUNDS))
            after.append(_settled(gateway, upstream, admin, tasks_at_most=baseline_tasks))
    print(
        f"{sum(done.values())} disconnects {dict(done)}; fds {baseline.fds} -> "
        f"{[u.fds for u, _ in after]}, sockets {baseline.sockets} -> {[u.sockets for u, _ in after]}, "
        f"tasks {baseline_tasks:.0f} -> {[t for _, t in after]}, rss {baseline.rss_mb:.0f} MB -> "
        f"{[round(u.rss_mb) for u, _ in after]} MB; {baseline.kinds()} -> {after[-1][0].kinds()}"
    )

    # Nothing grows with the number of disconnects: the last round ends where the first did, and
    # both at the baseline. Only the SQLite pool may open more connections under concurrency, up
    # to its bound (2 descriptors each; the shared-memory file once): a connection leaked per
    # disconnect would pass it.
    (first, _), (last, last_tasks) = after[0], after[-1]
    assert _without_database(last) <= _without_database(first) + 1, (first.kinds(), last.kinds())
    assert _without_database(first) <= _without_database(baseline) + 2, (baseline.kinds(), first.kinds())
    assert last.fds - _without_database(last) <= 2 * POOL + 1, last.kinds()
    assert last_tasks <= baseline_tasks, (baseline_tasks, last_tasks)
    assert last.threads <= first.threads + 1, (first.threads, last.threads)
    # The upstream saw each abandoned stream closed, not left to run to its end.
    assert upstream.state.open_streams == 0
    assert upstream.state.aborted_streams >= done["mid-stream"]

    # Every abandoned call is traced as what it was.
    def traced() -> Counter[str]:
        return _disconnected_spans(gateway) - before_spans

    assert wait_for(lambda: sum(traced().values()) == DISCONNECTS, timeout=5), traced()
    assert traced() == {
        "drip: client disconnected during the stream": done["mid-stream"],
        "late: client disconnected before the stream started": done["before-first-chunk"],
        "late: client disconnected": done["waiting"],
    }
    assert gateway.proc.poll() is None
    log = gateway.log_text()
    assert "unhandled error" not in log
    assert "Exception in ASGI application" not in log
