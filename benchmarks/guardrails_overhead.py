"""What the cheap guardrail policies add to a gateway call, measured in one process, side by side.

Three models on the same mock upstream (tests/support/mock_upstream.py in a process of its own,
pinned to core 1: a thread of this process would take the GIL from the gateway) through
`Gateway.chat`, the real OpenAI provider and HTTP, taking turns call by call so that each sees the
same machine:

    no policy          model="plain": the peer
    length only        model="light": one length policy on the input and the answer, a check that
                       costs nothing: what the engine itself adds (the policy lookup, running
                       the checks, the decisions' child spans)
    cheap policies     model="guarded": pii (redact), secrets (block), regex deny list (block),
                       length (block) on the input, and pii (flag) and length (block) on the answer;
                       each call's decisions are child spans, written as the call's span is

on a 2 KB user message (prose holding one e-mail address, which pii redacts). It prints each loop's
p50 and p99 per call and the difference (the target: under 1 ms added at p99), and, as a figure
the upstream's noise does not blur, the time the engine itself spent per call (the decisions'
latency, summed), p50 and p99. On a shared machine the wall figures move with the other
processes' load; the CPU this process's thread spent per call (`cpu`, time.thread_time) moves much
less: its added p50 is what the policies cost in work, whatever the load.

    .venv/bin/python benchmarks/guardrails_overhead.py [--calls 400] [--rounds 10]

Raw figures: benchmarks/results/guardrails_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import free_port, load, pct, pinned, process, save_result, wait_http

from fmops.catalog import ModelSpec
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.guardrails.schemas import AttachedPolicy
from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store, upgrade

SENTENCE = (
    "Our order arrived two days late and the box was damaged; the invoice number is 4471-2209 and "
    "the delivery window we were promised was Tuesday morning. "
)
MESSAGE = (SENTENCE * 12)[:1900] + " Reply to ada.lovelace@example.com please, thanks."
POLICIES: list[dict[str, Any]] = [
    {"name": "pii", "guardrail": "pii", "action": "redact"},
    {"name": "secrets", "guardrail": "secrets", "action": "block"},
    {
        "name": "deny",
        "guardrail": "regex",
        "config": {"patterns": [r"ignore (all )?previous instructions", r"\bDAN\b", r"jailbreak", "bomb"]},
    },
    {"name": "length", "guardrail": "length", "config": {"max_chars": 8000}, "on": "both"},
    {"name": "pii-out", "guardrail": "pii", "on": "output", "action": "flag"},
]


def build(home: Path, upstream: str) -> tuple[Platform, Any]:
    url = f"sqlite:///{home / 'fmops.db'}"
    store = Store(url)
    upgrade(store)
    platform = Platform.build(load_settings({"home": home, "database_url": url}), store)
    key = platform.auth.bootstrap(home / "admin.key")
    assert key is not None, "use an empty database"
    principal = platform.auth.authenticate(key)
    for alias in ("plain", "light", "guarded"):
        spec = ModelSpec(alias=alias, provider="openai", model="m", base_url=upstream, max_retries=0)
        platform.catalog.add(principal.project_id, spec, trusted=True)
    for policy in POLICIES:
        body = {**policy, "scope": "model", "target": "guarded"}
        platform.guardrails.create(principal.project_id, AttachedPolicy.model_validate(body), actor="bench")
    light = {"name": "length", "guardrail": "length", "config": {"max_chars": 8000}, "on": "both"}
    light |= {"scope": "model", "target": "light"}
    platform.guardrails.create(principal.project_id, AttachedPolicy.model_validate(light), actor="bench")
    return platform, principal


async def run(platform: Platform, principal: Any, calls: int, rounds: int, tracing: bool) -> dict[str, Any]:
    gateway = platform.gateway
    gateway.tracing = tracing  # off: no spans at all (the calls' nor the decisions'), to see what they cost
    requests = {
        name: ChatCompletionRequest.model_validate(
            {"model": name, "messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 64}
        )
        for name in ("plain", "light", "guarded")
    }
    platform.tracer.start()
    for request in requests.values():  # warm caches, connections and code paths
        for _ in range(100):
            await gateway.chat(principal, request)
    walls: dict[str, list[float]] = {name: [] for name in requests}
    engine: dict[str, list[float]] = {name: [] for name in requests}
    cpu: dict[str, list[float]] = {name: [] for name in requests}
    clock, thread_clock = time.perf_counter, time.thread_time
    for _ in range(rounds * calls):  # call by call in turn: a busy moment costs each loop alike
        for name, request in requests.items():
            started, started_cpu = clock(), thread_clock()
            done = await gateway.chat(principal, request)
            walls[name].append((clock() - started) * 1000)
            cpu[name].append((thread_clock() - started_cpu) * 1000)
            if done.record.guardrails is not None:
                engine[name].append(sum(t.latency_ms for t in done.record.guardrails.tallies.values()))
    checked = await gateway.chat(principal, requests["guarded"])
    assert "ada.lovelace" not in str(checked.record.input), "the e-mail address was not redacted"
    result: dict[str, Any] = {"message_chars": len(MESSAGE), "calls": calls * rounds, "policies": POLICIES}
    for name, values in walls.items():
        result[name] = {
            "p50_ms": pct(values, 0.5),
            "p99_ms": pct(values, 0.99),
            "mean_ms": statistics.fmean(values),
            "cpu_p50_ms": pct(cpu[name], 0.5),
        }
        line = f"{name:8s} p50 {result[name]['p50_ms']:7.3f} ms   p99 {result[name]['p99_ms']:7.3f} ms"
        if name != "plain":
            added = {q: result[name][f"{q}_ms"] - result["plain"][f"{q}_ms"] for q in ("p50", "p99")}
            checks = engine[name]
            result[name] |= {
                "added_p50_ms": added["p50"],
                "added_p99_ms": added["p99"],
                "added_cpu_p50_ms": result[name]["cpu_p50_ms"] - result["plain"]["cpu_p50_ms"],
                "checks_p50_ms": pct(checks, 0.5),
                "checks_p99_ms": pct(checks, 0.99),
            }
            line += (
                f"   added p50 {added['p50']:+7.3f} p99 {added['p99']:+7.3f}"
                f"   checks alone p50 {pct(checks, 0.5):6.3f} p99 {pct(checks, 0.99):6.3f}"
                f"   cpu added p50 {result[name]['added_cpu_p50_ms']:+6.3f}"
            )
        print(line)
    await gateway.close()
    await platform.tracer.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-tracing", action="store_true", help="write no spans (FMOPS_TRACING=false)")
    args = parser.parse_args()
    load_before = load()
    root = Path(__file__).resolve().parent.parent
    port = free_port()
    mock = pinned(
        1, [sys.executable, str(root / "tests" / "support" / "mock_upstream.py"), "--port", str(port)]
    )
    env = {**os.environ, "PYTHONPATH": str(root / "tests")}
    with tempfile.TemporaryDirectory(prefix="fmops-bench-") as folder, process(mock, env=env):
        wait_http(f"http://127.0.0.1:{port}/_control/stats")
        platform, principal = build(Path(folder), f"http://127.0.0.1:{port}/v1")
        results = asyncio.run(run(platform, principal, args.calls, args.rounds, not args.no_tracing))
        results["tracing"] = not args.no_tracing
        platform.store.dispose()
    save_result(
        "guardrails_overhead" + ("_untraced" if args.no_tracing else ""), results, load_before=load_before
    )


if __name__ == "__main__":
    main()
