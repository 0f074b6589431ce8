"""Where a gateway request's time goes: fmops under load, sampled by py-spy.

The setup of gateway_vs_litellm.py (fmops pinned to core 0 with auth, limits, budgets, cost
accounting and tracing on; the mock upstream and wrk on core 1), with py-spy recording the server
while wrk holds 32 connections for --seconds. Prints the functions that take the most of the
server's samples (own time, and time including callees, per module), and writes them with the
req/s measured under the profiler (py-spy slows the process a little).

    .venv/bin/pip install py-spy   # not a project dependency
    .venv/bin/python benchmarks/gateway_profile.py [--seconds 15] [--stream | --endpoint] [--top 40]

--endpoint calls gateway_vs_litellm.py's endpoint (a prompt with two variables, two weighted variants)
instead of the model. Raw figures: benchmarks/results/gateway_profile.json (gateway_profile_stream.json
with --stream, gateway_profile_endpoint.json with --endpoint).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    BIN,
    ROOT,
    free_port,
    load,
    mock_model_and_key,
    pinned,
    process,
    save_result,
    wait_http,
    wrk,
)
from gateway_vs_litellm import bench_endpoint


def prepare(home: Path, mock_url: str, env: dict[str, str]) -> str:
    return mock_model_and_key(env, mock_url)


def summarise(collapsed: Path, top: int) -> dict[str, object]:
    """Own and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = []
        for frame in stack.split(";"):
            function, _, where = frame.partition(" (")
            frames.append(f"{function} ({where.rstrip(')').rsplit(':', 1)[0].rsplit('/', 1)[-1]})")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "own_percent": share(own), "inclusive_percent": share(inclusive)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--endpoint", action="store_true", help="call an endpoint, not the model")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    spy = BIN / "py-spy"
    if not spy.exists():
        raise SystemExit(f"py-spy is not installed: {BIN / 'pip'} install py-spy")
    load_before = load()
    work = Path(tempfile.mkdtemp(prefix="fmops-profile-"))
    body = work / "body.json"
    request = {"model": "mock", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
    body.write_text(json.dumps({**request, "stream": True} if args.stream else request))
    mock_port, port = free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}/v1"
    home = work / "home"
    env = {**os.environ, "FMOPS_HOME": str(home), "FMOPS_PORT": str(port), "FMOPS_WORKERS": "0"}
    mock = pinned(
        1, [sys.executable, str(ROOT / "tests" / "support" / "mock_upstream.py"), "--port", str(mock_port)]
    )
    with process(mock, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}):
        wait_http(f"http://127.0.0.1:{mock_port}/_control/stats")
        key = prepare(home, mock_url, env)
        if args.endpoint:
            body = bench_endpoint(env, work)
        with process(pinned(0, [str(BIN / "fmops"), "up"]), env=env, log=work / "fmops.log") as server:
            wait_http(f"http://127.0.0.1:{port}/readyz")
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
            wrk(url, body, connections=4, seconds=3, core=1, headers=headers)  # warm-up
            collapsed = work / "profile.txt"
            record = [
                str(spy),
                "record",
                "--pid",
                str(server.pid),
                "--format",
                "raw",
                "--gil",
                "--nonblocking",
            ]
            # --gil: only samples holding the GIL, i.e. Python at work (waits drop out); --nonblocking:
            # the server is not paused for each sample, so it runs at nearly its own speed.
            record += ["--duration", str(args.seconds + 1), "--rate", "200", "--output", str(collapsed)]
            with subprocess.Popen([*pinned(1, record)], stdout=subprocess.DEVNULL) as spying:
                time.sleep(0.5)
                measured = wrk(url, body, connections=32, seconds=args.seconds, core=1, headers=headers)
                spying.wait(60)
    summary = summarise(collapsed, args.top)
    kind = "stream" if args.stream else "endpoint" if args.endpoint else "plain"
    print(f"\n{kind}, concurrency 32 under py-spy: {measured.rps:.0f} req/s, p99 {measured.p99_ms:.1f} ms")
    print(f"{summary['samples']} samples; own time (% of samples):")
    for name, pct in summary["own_percent"]:  # type: ignore[attr-defined]
        print(f"  {pct:5.1f}  {name}")
    print("inclusive time (% of samples):")
    for name, pct in summary["inclusive_percent"]:  # type: ignore[attr-defined]
        print(f"  {pct:5.1f}  {name}")
    print(f"collapsed stacks (for a flame graph): {collapsed}")
    name = "gateway_profile" if kind == "plain" else f"gateway_profile_{kind}"
    save_result(name, {"kind": kind, "wrk_under_profiler": measured, **summary}, load_before=load_before)


if __name__ == "__main__":
    main()
