"""Soak: a steady request rate for a long time, with a 10x spike in the middle (issue 7, item 15).

One `fmops up` (SQLite, no job workers) in front of the mock upstream (50 ms per answer) and an
open-loop load generator: requests are sent on a fixed schedule whatever the answers' latency, so a
slow server shows up as latency rather than as a lower rate.
One call in five streams. The key has an rpm limit of 3x the steady rate, so the spike runs into it.

Every 5 s it samples the server's resident memory, open file descriptors, threads, event-loop tasks
and trace queue. Pass (exit 0) when:
- memory is flat: after the warm-up, RSS grows less than --rss-growth-mb (default 50 MB, the spike
  included) and, on runs of 10 minutes or more, its trend within each steady phase (before and after
  the spike) is under 1 MB/min;
- file descriptors are flat: with no client connected and the upstream pool idle, the server holds
  at most 2 more than before the load (SQLite's pooled connections aside, bounded by the pool);
- p99 latency of the steady phases is within --p99-ms (default 250 ms);
- no errors outside the spike's rate limit: every call answers 2xx, except 429s from the spike's
  start until one rate-limit window (60 s) after its end.

    .venv/bin/python benchmarks/soak.py                 # 3 minutes
    .venv/bin/python benchmarks/soak.py --minutes 30    # the real run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import quantiles

import aiohttp
import httpx
from _harness import BIN, ROOT, free_port, load, process, save_result, wait_http

WINDOW_S = 60.0  # the rate limiter's window: a spike's 429s may outlast it by this much
SAMPLE_S = 5.0


@dataclass
class Call:
    sent: float  # seconds since the start of the run
    seconds: float
    status: int  # 0: no HTTP answer (connection error or client timeout)
    stream: bool
    error: str = ""


@dataclass
class Sample:
    at: float
    rss_mb: float
    fds: int  # every open descriptor: sockets (clients' keep-alive connections too), files, pipes
    db_fds: int  # the SQLite files, open once per pooled connection: bounded by the pool
    threads: int
    tasks: float
    queue: float


@dataclass
class Plan:
    seconds: float
    rate: float
    spike_rate: float
    spike_start: float
    spike_end: float
    warmup: float

    def rate_at(self, t: float) -> float:
        return self.spike_rate if self.spike_start <= t < self.spike_end else self.rate

    def phase(self, t: float) -> str:
        """warm-up, steady, spike, recovery (one rate-limit window after the spike), after."""
        if t < self.warmup:
            return "warm-up"
        if t < self.spike_start:
            return "steady"
        if t < self.spike_end:
            return "spike"
        if t < self.spike_end + WINDOW_S:
            return "recovery"
        return "after"


@dataclass
class Report:
    plan: dict[str, float]
    phases: dict[str, dict[str, float | int | dict[str, int]]] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)
    errors_outside_spike: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    rss_growth_mb: float = 0.0
    rss_trend_mb_per_min: float = 0.0
    fd_growth: int = 0  # with no client connected, after the run vs before it; database files aside
    db_fds: int = 0
    steady_p99_ms: float = 0.0
    verdicts: dict[str, bool] = field(default_factory=dict)


def _sample(pid: int, at: float, metrics: str) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return Sample(
        at=at,
        rss_mb=rss,
        fds=len(targets),
        db_fds=sum(1 for t in targets if "fmops.db" in t),
        threads=threads,
        tasks=_metric(metrics, "fmops_asyncio_tasks"),
        queue=_metric(metrics, "fmops_trace_queue_depth"),
    )


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


async def _sampler(
    pid: int, admin: httpx.AsyncClient, started: float, until: float, out: list[Sample]
) -> None:
    while time.monotonic() < until:
        metrics = (await admin.get("/metrics")).text
        out.append(_sample(pid, time.monotonic() - started, metrics))
        await asyncio.sleep(SAMPLE_S)


async def _one(
    session: aiohttp.ClientSession, url: str, started: float, stream: bool, calls: list[Call]
) -> None:
    sent = time.monotonic()
    body = {"model": "soak", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream}
    try:
        async with session.post(url, json=body) as resp:
            async for _ in resp.content.iter_any():  # a stream to its end, or a body
                pass
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        calls.append(Call(sent - started, time.monotonic() - sent, 0, stream, type(exc).__name__))
        return
    calls.append(Call(sent - started, time.monotonic() - sent, status, stream))


async def _quiet_sample(url: str, key: str, admin: httpx.AsyncClient, pid: int) -> Sample:
    """What the server holds with no client connected: after a few calls of each kind (so what is
    built lazily exists), every client connection closed."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for i in range(20):
            await _one(session, f"{url}/v1/chat/completions", time.monotonic(), i % 5 == 0, [])
    await asyncio.sleep(2.0)
    return _sample(pid, 0.0, (await admin.get("/metrics")).text)


async def _load(url: str, key: str, admin_key: str, pid: int, plan: Plan) -> tuple[list[Call], list[Sample]]:
    """Open loop: the n-th call is sent at its scheduled time, whatever happened to the others.

    aiohttp, not httpx, drives the load: it costs the load generator a few times less CPU per call.
    Its idle connections close after 4 s, before uvicorn's 5 s keep-alive timeout: a client that
    keeps them longer races the server's close and sees the odd reset (a client setting to know).
    Returns the calls and the samples: the first and last ones are quiet samples (before and after).
    """
    calls: list[Call] = []
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=2000, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"Authorization": f"Bearer {key}"}
    target = f"{url}/v1/chat/completions"
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        before = await _quiet_sample(url, key, admin, pid)
        async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
            started = time.monotonic()
            sampler = asyncio.create_task(_sampler(pid, admin, started, started + plan.seconds, samples))
            pending: set[asyncio.Task[None]] = set()
            n, next_at = 0, 0.0
            while next_at < plan.seconds:
                delay = started + next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(_one(session, target, started, n % 5 == 0, calls))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                next_at += 1.0 / plan.rate_at(next_at)
            await asyncio.gather(*pending)
            await sampler
        # The load's connections are closed; pooled upstream connections idle out within 15 s
        # (aiohttp's keep-alive). Then the server should hold what it held before the load.
        for _ in range(25):
            await asyncio.sleep(1.0)
            after = _sample(pid, time.monotonic() - started, (await admin.get("/metrics")).text)
            if after.fds - after.db_fds <= before.fds - before.db_fds:
                break
    return calls, [before, *samples, after]


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return quantiles(values, n=100, method="inclusive")[q - 1]


def _trend(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def summarise(plan: Plan, calls: list[Call], samples: list[Sample], args: argparse.Namespace) -> Report:
    report = Report(plan=asdict(plan))
    for phase in ("warm-up", "steady", "spike", "recovery", "after"):
        mine = [c for c in calls if plan.phase(c.sent) == phase]
        if not mine:
            continue
        span = max(c.sent for c in mine) - min(c.sent for c in mine) or 1.0
        ok = [c.seconds * 1000 for c in mine if 200 <= c.status < 300]
        report.phases[phase] = {
            "calls": len(mine),
            "rps": round(len(mine) / span, 1),
            "p50_ms": round(_p(ok, 50), 1),
            "p99_ms": round(_p(ok, 99), 1),
            "statuses": dict(Counter(str(c.status) for c in mine)),
        }
    # The spike may be refused with 429 (the key's rpm limit), until its calls leave the window.
    errors = [
        c
        for c in calls
        if not 200 <= c.status < 300 and not (c.status == 429 and plan.phase(c.sent) in ("spike", "recovery"))
    ]
    report.errors_outside_spike = len(errors)
    report.error_kinds = dict(Counter(f"{c.status} {c.error}".strip() for c in errors))
    before, during, after = samples[0], samples[1:-1], samples[-1]
    settled = [s for s in during if s.at >= plan.warmup]
    report.rss_growth_mb = round(after.rss_mb - (settled[0] if settled else before).rss_mb, 1)
    # The spike raises RSS by a step (the allocator keeps its high-water mark); a leak is a slope
    # at a steady rate, so the trend is taken within each steady phase, before and after the spike.
    report.rss_trend_mb_per_min = round(
        max(
            _trend([(s.at, s.rss_mb) for s in settled if plan.phase(s.at) == phase])
            for phase in ("steady", "after")
        ),
        2,
    )
    report.fd_growth = (after.fds - after.db_fds) - (before.fds - before.db_fds)
    report.db_fds = max(s.db_fds for s in samples)
    steady_ok = [
        c.seconds * 1000 for c in calls if plan.phase(c.sent) in ("steady", "after") and 200 <= c.status < 300
    ]
    report.steady_p99_ms = round(_p(steady_ok, 99), 1)
    report.samples = [asdict(s) for s in samples]
    # A trend needs time to mean something: judged on runs of 10 minutes or more.
    trend_ok = report.rss_trend_mb_per_min < 1.0 or plan.seconds < 600
    report.verdicts = {
        "memory flat": report.rss_growth_mb < args.rss_growth_mb and trend_ok,
        # The SQLite pool keeps up to 8 connections (more under load, closed again): 2 files each.
        "file descriptors flat": report.fd_growth <= 2 and report.db_fds <= 2 * 24 + 1,
        "p99 within budget": report.steady_p99_ms <= args.p99_ms,
        "no errors outside the spike's rate limit": report.errors_outside_spike == 0,
    }
    return report


def _prepare(home: Path, mock_url: str, env: dict[str, str]) -> None:
    add = [str(BIN / "fmops"), "models", "add", "soak", "--provider", "openai", "--model", "slow-50"]
    add += ["--base-url", mock_url, "--retries", "0", "--input-price", "0.15", "--output-price", "0.6"]
    subprocess.run(add, env=env, check=True, capture_output=True)


def _soak_key(url: str, admin_key: str, rpm: int) -> str:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        created = client.post("/api/keys", json={"name": "soak", "role": "consumer"}).json()
        client.patch(f"/api/keys/{created['id']}/limits", json={"rpm_limit": rpm}).raise_for_status()
        return str(created["key"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=20.0, help="steady requests per second")
    parser.add_argument(
        "--spike-seconds", type=float, default=None, help="default: 10%% of the run, at most 60"
    )
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--rss-growth-mb", type=float, default=50.0)
    parser.add_argument("--json", type=Path, default=None, help="write the full report (with samples) here")
    args = parser.parse_args()
    load_before = load()

    seconds = args.minutes * 60
    spike = args.spike_seconds or min(60.0, seconds / 10)
    warmup = min(30.0, seconds / 6)
    spike_start = warmup + (seconds - warmup - spike - WINDOW_S) / 2
    plan = Plan(seconds, args.rate, 10 * args.rate, spike_start, spike_start + spike, warmup)
    if spike_start < warmup:
        parser.error("the run is too short for a warm-up, a spike and a rate-limit window after it")

    work = Path(tempfile.mkdtemp(prefix="fmops-soak-"))
    home = work / "home"
    mock_port, port = free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}/v1"
    env = {**os.environ, "FMOPS_HOME": str(home), "FMOPS_PORT": str(port), "FMOPS_WORKERS": "0"}
    mock_argv = [sys.executable, str(ROOT / "tests/support/mock_upstream.py"), "--port", str(mock_port)]
    with process(mock_argv, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}):
        wait_http(f"http://127.0.0.1:{mock_port}/_control/stats")
        _prepare(home, mock_url, env)
        with process([str(BIN / "fmops"), "up"], env=env, log=work / "server.log") as server:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/readyz")
            admin_key = (home / "admin.key").read_text().strip()
            key = _soak_key(url, admin_key, rpm=int(3 * args.rate * 60))
            print(
                f"soak: {args.minutes:g} min at {args.rate:g} rps, spike to {10 * args.rate:g} rps "
                f"for {spike:.0f}s at t={spike_start:.0f}s; server log {work / 'server.log'}",
                flush=True,
            )
            calls, samples = asyncio.run(_load(url, key, admin_key, server.pid, plan))
    report = summarise(plan, calls, samples, args)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    for phase, stats in report.phases.items():
        print(f"  {phase:8} {stats}")
    before, after = samples[0], samples[-1]
    print(
        f"  RSS {before.rss_mb:.0f} MB before the load, {after.rss_mb:.0f} MB after it (since the warm-up: "
        f"{report.rss_growth_mb:+.1f} MB, trend {report.rss_trend_mb_per_min:+.2f} MB/min, max "
        f"{max(s.rss_mb for s in samples):.0f} MB); descriptors with no client connected {before.fds} -> "
        f"{after.fds} (database files {before.db_fds} -> {after.db_fds}, at most {report.db_fds}); "
        f"tasks {before.tasks:.0f} -> {after.tasks:.0f}; threads {before.threads} -> {after.threads}"
    )
    outside = report.errors_outside_spike
    print(
        f"  steady p99 {report.steady_p99_ms} ms; errors outside the spike's rate limit: {outside} "
        f"{report.error_kinds or ''}"
    )
    for name, ok in report.verdicts.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    summary = {k: v for k, v in asdict(report).items() if k != "samples"}
    save_result("soak", {"plan": asdict(plan), "report": summary}, load_before=load_before)
    sys.exit(0 if all(report.verdicts.values()) else 1)


if __name__ == "__main__":
    main()
