"""A/B of the gateway's cost: CPU time per request of fmops servers built from different source trees.

For a change to the hot path on a shared, loaded machine, req/s swings with the neighbours; the
server's own CPU time per request (utime + stime from /proc, over a wrk run at concurrency 32)
moves much less. Each tree (e.g. `git worktree add /tmp/base <commit>`) runs in turn, interleaved
for --rounds, with the setup of gateway_vs_litellm.py (server on core 0; mock upstream and wrk on 1).

    .venv/bin/python benchmarks/gateway_ab.py /tmp/base/src,/tmp/new/src [--stream] [--name NAME]
    ROUNDS=4 SECS=8 (environment): rounds, and seconds per measured run

Raw figures: benchmarks/results/NAME.json (default gateway_ab, or gateway_ab_stream with --stream),
with each tree's commit (and whether its checkout had changes).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


def cpu(pid: int) -> float:
    """Seconds of CPU the process has used (user + system)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(src, mock_url, stream, seconds):
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    home = work / "home"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": src,
        "FMOPS_HOME": str(home),
        "FMOPS_PORT": str(port),
        "FMOPS_WORKERS": "0",
    }
    fm = str(BIN / "fmops")
    key = mock_model_and_key(env, mock_url)
    body = work / "b.json"
    req = {"model": "mock", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
    if stream:
        req["stream"] = True
    body.write_text(json.dumps(req))
    with process(pinned(0, [fm, "up"]), env=env, log=work / "log") as p:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        h = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wrk(url, body, connections=4, seconds=2, core=1, headers=h)
        c0 = cpu(p.pid)
        r = wrk(url, body, connections=32, seconds=seconds, core=1, headers=h)
        c1 = cpu(p.pid)
    return r.rps, (c1 - c0) / max(r.requests, 1) * 1e6, r.errors


def tree_commit(src: str) -> dict[str, object]:
    """The commit a source tree was checked out at, and whether it had changes (None: not a checkout)."""

    def git(*args: str) -> str:
        found = subprocess.run(["git", "-C", src, *args], capture_output=True, text=True, check=False)
        return found.stdout.strip() if found.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    return {"commit": head or None, "dirty": bool(git("status", "--porcelain", "--", ".")) if head else None}


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("trees", help="source trees (their src folders), comma-separated")
parser.add_argument("--stream", action="store_true")
parser.add_argument("--name", help="results file name (benchmarks/results/NAME.json)")
args = parser.parse_args()
load_before = load()
srcs = args.trees.split(",")
stream = args.stream
rounds = int(os.environ.get("ROUNDS", "2"))
secs = int(os.environ.get("SECS", "8"))
mport = free_port()
with process(
    pinned(1, [sys.executable, str(ROOT / "tests" / "support" / "mock_upstream.py"), "--port", str(mport)]),
    env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
):
    wait_http(f"http://127.0.0.1:{mport}/_control/stats")
    res = {s: [] for s in srcs}
    for _ in range(rounds):
        for s in srcs:
            res[s].append(run(s, f"http://127.0.0.1:{mport}/v1", stream, secs))
            print(s, res[s][-1], os.getloadavg()[0], flush=True)
for s, v in res.items():
    rps, cpu_us, errors = [round(x[0]) for x in v], [round(x[1]) for x in v], [x[2] for x in v]
    print(f"{s}: rps {rps} cpu_us/req {cpu_us} errors {errors}")
save_result(
    args.name or ("gateway_ab_stream" if stream else "gateway_ab"),
    {
        t: {
            **tree_commit(t),
            "rounds": [{"rps": r, "cpu_us_per_request": c, "errors": e} for r, c, e in v],
        }
        for t, v in res.items()
    },
    load_before=load_before,
)
