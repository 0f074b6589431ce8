"""Gateway overhead: fmops vs LiteLLM's proxy and a bare floor, side by side, in one run, on this machine.

Each gateway runs with one worker pinned to core 0; the mock upstream (tests/support/mock_upstream.py)
and the load generator (wrk) share core 1. fmops runs with auth, rate limits, cost accounting and
tracing on; LiteLLM with a master key and no database; the floor (benchmarks/floor_gateway.py) is
Starlette + aiohttp + a row per call batched into SQLite, what any Python gateway pays. We report
the latency each adds over calling the mock directly (concurrency 1, p50/p99) and requests/s with p99
at concurrency 32, for plain and streaming requests; then check that fmops stored a span for every
2xx it served. With `--endpoint` (the default) fmops is also called through an endpoint at
concurrency 32: a prompt rendered with variables and two weighted variants, both on the mock model,
reported as a ratio of the plain req/s of two runs made just before and after it, on the same
database (the target: within 20%).

    .venv/bin/python benchmarks/gateway_vs_litellm.py [--seconds 10] [--litellm-venv DIR] [--no-endpoint]

LiteLLM (the exact version in LITELLM below) is installed from PyPI into its own virtualenv on first run
(benchmarks/.venvs/litellm-VERSION); it is no dependency of fmops.
Raw figures: benchmarks/results/gateway_vs_litellm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import (
    BIN,
    ROOT,
    WrkResult,
    free_port,
    load,
    mock_model_and_key,
    pinned,
    process,
    save_result,
    wait_http,
    wrk,
)

# Pinned so a figure names the peer it was measured against; bump it deliberately and rerun.
LITELLM = "1.108.7"
MODEL = "mock"
MASTER_KEY = "sk-litellm-bench-master"
FLOOR_KEY = "sk-floor-bench"
GATEWAYS = ("direct", "floor", "fmops", "litellm")


def ensure_litellm(venv: Path) -> Path:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"installing LiteLLM into {venv} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM}"], check=True)
    return exe


def litellm_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "pip"), "show", "litellm"], capture_output=True, text=True
    ).stdout
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version")), "?"
    )


def bodies(folder: Path) -> dict[str, Path]:
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
    stream = {**plain, "stream": True}
    out = {}
    for name, body in (("plain", plain), ("stream", stream)):
        path = folder / f"{name}.json"
        path.write_text(json.dumps(body))
        out[name] = path
    return out


ENDPOINT = "bench-bot"
ENDPOINT_TARGET = 0.8  # "endpoint calls within 20% of plain model calls" (issue 21)


def bench_endpoint(env: dict[str, str], folder: Path) -> Path:
    """Create endpoint ENDPOINT in the fmops home of `env` (a prompt with two variables, two weighted
    variants on MODEL differing in temperature) and return the body that calls it."""
    prompt = {
        "name": "bench-support",
        "model": MODEL,
        "params": {"max_tokens": 16},
        "messages": [
            {"role": "system", "content": "You answer for {{ company }}. Be brief."},
            {"role": "user", "content": "{{ question }}"},
        ],
        "labels": ["production"],
    }
    endpoint = {
        "name": ENDPOINT,
        "prompt": "bench-support",
        "label": "production",
        "variants": [
            {"name": "a", "weight": 1, "params": {"temperature": 0.2}},
            {"name": "b", "weight": 2, "params": {"temperature": 0.7}},
        ],
    }
    fmops = str(BIN / "fmops")
    for kind, spec in (("prompts", prompt), ("endpoints", endpoint)):
        path = folder / f"{kind}-spec.json"
        path.write_text(json.dumps(spec))
        verb = "push" if kind == "prompts" else "create"
        subprocess.run([fmops, kind, verb, str(path)], env=env, check=True, capture_output=True)
    body = folder / "endpoint.json"
    variables = {"company": "Acme", "question": "Say hello"}
    body.write_text(json.dumps({"model": ENDPOINT, "messages": [], "variables": variables}))
    return body


def endpoint_runs(
    url: str, body: Path, plain: Path, headers: dict[str, str], seconds: int
) -> dict[str, WrkResult]:
    """The endpoint at concurrency 32, after a warm-up, between two plain c32 runs: its peers.

    Every call stores a span, and a span costs more to write as the database grows (each one dirties
    a page of every index keyed by random ids: the span's; the trace's too before 34624dd made
    gateway trace ids time first): in one server at 561fe64, plain c32 fell from 2,773-2,955 to
    2,268-2,452 req/s over five 8 s runs. Compared with the matrix's plain c32, made
    ~100,000 spans earlier, the endpoint was charged for that growth too."""

    def c32(path: Path) -> WrkResult:
        return wrk(url, path, connections=32, seconds=seconds, core=1, headers=headers)

    return {
        "endpoint warm-up": wrk(url, body, connections=4, seconds=2, core=1, headers=headers),
        "plain c32 before endpoint": c32(plain),
        "endpoint c32": c32(body),
        "plain c32 after endpoint": c32(plain),
    }


def endpoint_ratio(fmops: dict[str, WrkResult]) -> float:
    """Endpoint req/s over the mean of the plain runs made just before and after it."""
    peers = (fmops["plain c32 before endpoint"].rps + fmops["plain c32 after endpoint"].rps) / 2
    return fmops["endpoint c32"].rps / max(peers, 1e-3)


def run_matrix(
    url: str, files: dict[str, Path], headers: dict[str, str], seconds: int
) -> dict[str, WrkResult]:
    results = {}
    for name, path in files.items():
        # Warm up connections, caches and lazy imports before measuring (counted, not printed).
        results[f"{name} warm-up"] = wrk(url, path, connections=4, seconds=2, core=1, headers=headers)
        results[f"{name} c1"] = wrk(url, path, connections=1, seconds=seconds, core=1, headers=headers)
        results[f"{name} c32"] = wrk(url, path, connections=32, seconds=seconds, core=1, headers=headers)
    return results


def pinned_litellm(venv: Path) -> Path:
    """The `litellm` executable of `venv`, installed there first if missing; refused unless it is LITELLM."""
    exe = ensure_litellm(venv)
    version = litellm_version(venv)
    if version != LITELLM:
        raise SystemExit(f"{venv} holds LiteLLM {version}, not {LITELLM}: remove it and rerun")
    return exe


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--litellm-venv", type=Path, default=ROOT / "benchmarks" / ".venvs" / f"litellm-{LITELLM}"
    )
    parser.add_argument(
        "--endpoint",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure fmops called through an endpoint (prompt + two variants) at c32",
    )
    args = parser.parse_args()
    litellm = pinned_litellm(args.litellm_venv)
    version = LITELLM
    load_before = load()
    work = Path(tempfile.mkdtemp(prefix="fmops-bench-"))
    files = bodies(work)
    mock_port, fmops_port, litellm_port, floor_port = free_port(), free_port(), free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}/v1"
    json_headers = {"Content-Type": "application/json"}
    results: dict[str, dict[str, WrkResult]] = {}

    mock_argv = pinned(
        1, [sys.executable, str(ROOT / "tests" / "support" / "mock_upstream.py"), "--port", str(mock_port)]
    )
    with process(mock_argv, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}):
        wait_http(f"http://127.0.0.1:{mock_port}/_control/stats")
        results["direct"] = run_matrix(f"{mock_url}/chat/completions", files, json_headers, args.seconds)

        floor_argv = [
            sys.executable,
            str(ROOT / "benchmarks" / "floor_gateway.py"),
            "--port",
            str(floor_port),
        ]
        floor_argv += ["--upstream", mock_url, "--key", FLOOR_KEY, "--db", str(work / "floor.db")]
        with process(pinned(0, floor_argv), env=dict(os.environ), log=work / "floor.log"):
            wait_http(f"http://127.0.0.1:{floor_port}/")
            auth = {**json_headers, "Authorization": f"Bearer {FLOOR_KEY}"}
            results["floor"] = run_matrix(
                f"http://127.0.0.1:{floor_port}/v1/chat/completions", files, auth, args.seconds
            )

        # fmops: one process, no job workers, everything on the request path enabled.
        home = work / "fmops-home"
        env = {**os.environ, "FMOPS_HOME": str(home), "FMOPS_PORT": str(fmops_port), "FMOPS_WORKERS": "0"}
        fmops = str(BIN / "fmops")
        key = mock_model_and_key(env, mock_url, MODEL)
        endpoint_body = bench_endpoint(env, work) if args.endpoint else None
        with process(pinned(0, [fmops, "up"]), env=env, log=work / "fmops.log"):
            wait_http(f"http://127.0.0.1:{fmops_port}/readyz")
            auth = {**json_headers, "Authorization": f"Bearer {key}"}
            chat_url = f"http://127.0.0.1:{fmops_port}/v1/chat/completions"
            results["fmops"] = run_matrix(chat_url, files, auth, args.seconds)
            if endpoint_body is not None:
                results["fmops"] |= endpoint_runs(chat_url, endpoint_body, files["plain"], auth, args.seconds)
            time.sleep(1.5)  # let the last batch of spans land
        served = sum(r.requests - r.errors for r in results["fmops"].values())
        with sqlite3.connect(home / "fmops.db") as db:
            spans = db.execute("SELECT count(*) FROM spans WHERE status = 'ok'").fetchone()[0]

        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            "      model: openai/m1\n"
            f"      api_base: {mock_url}\n"
            "      api_key: sk-mock\n"
            "general_settings:\n"
            f"  master_key: {MASTER_KEY}\n"
        )
        lenv = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR"}
        argv = pinned(
            0, [str(litellm), "--config", str(config), "--port", str(litellm_port), "--num_workers", "1"]
        )
        with process(argv, env=lenv, log=work / "litellm.log"):
            wait_http(f"http://127.0.0.1:{litellm_port}/health/liveliness", timeout=180)
            auth = {**json_headers, "Authorization": f"Bearer {MASTER_KEY}"}
            results["litellm"] = run_matrix(
                f"http://127.0.0.1:{litellm_port}/v1/chat/completions", files, auth, args.seconds
            )

    print(f"\nfmops vs LiteLLM {version} proxy and the bare floor, {args.seconds}s per run, 1 worker each")
    print(f"{'run':<12}{'':>2}" + "".join(f"{name:>26}" for name in GATEWAYS))
    for run in ("plain c1", "plain c32", "stream c1", "stream c32"):
        cells = []
        for name in GATEWAYS:
            r = results[name][run]
            cells.append(f"{r.rps:8.0f}/s p50 {r.p50_ms:5.2f} p99 {r.p99_ms:6.1f}")
        print(f"{run:<12}  " + "  ".join(f"{c:>24}" for c in cells))
    print()
    for kind in ("plain", "stream"):
        d, f, lt = (results[n][f"{kind} c1"] for n in ("direct", "fmops", "litellm"))
        added_f, added_l = f.p50_ms - d.p50_ms, lt.p50_ms - d.p50_ms
        added_f99, added_l99 = f.p99_ms - d.p99_ms, lt.p99_ms - d.p99_ms
        f32, l32 = results["fmops"][f"{kind} c32"], results["litellm"][f"{kind} c32"]
        print(
            f"[{kind}] added latency c1: fmops p50 {added_f:.2f} ms / p99 {added_f99:.2f} ms; "
            f"litellm p50 {added_l:.2f} ms / p99 {added_l99:.2f} ms; "
            f"litellm/fmops (p50) {added_l / max(added_f, 1e-3):.1f}x"
        )
        print(
            f"[{kind}] throughput c32: fmops {f32.rps:.0f}/s (p99 {f32.p99_ms:.0f} ms), "
            f"litellm {l32.rps:.0f}/s (p99 {l32.p99_ms:.0f} ms); "
            f"fmops/litellm {f32.rps / max(l32.rps, 1e-3):.1f}x"
        )
        floor32, floor1 = results["floor"][f"{kind} c32"], results["floor"][f"{kind} c1"]
        print(
            f"[{kind}] the floor: {floor32.rps:.0f}/s at c32 "
            f"(fmops {f32.rps / max(floor32.rps, 1e-3):.2f}x of it), "
            f"added p50 c1 {floor1.p50_ms - d.p50_ms:.2f} ms"
        )
    if args.endpoint:
        e32 = results["fmops"]["endpoint c32"]
        before, after = (results["fmops"][f"plain c32 {when} endpoint"] for when in ("before", "after"))
        ratio = endpoint_ratio(results["fmops"])
        print(
            f"[endpoint] throughput c32: fmops endpoint (prompt + 2 variants) {e32.rps:.0f}/s "
            f"(p99 {e32.p99_ms:.0f} ms), plain just before and after {before.rps:.0f}/s and "
            f"{after.rps:.0f}/s; endpoint/plain {ratio:.2f} "
            f"(target: within 20%, >= {ENDPOINT_TARGET}: {'met' if ratio >= ENDPOINT_TARGET else 'missed'})"
        )
    errors = {n: sum(r.errors for r in results[n].values()) for n in results}
    print(
        f"\nerrors: {errors}; fmops spans stored {spans} of {served} successful requests"
        f" ({'none lost' if spans >= served else f'{served - spans} missing'})"
    )
    ratios = {
        f"fmops/litellm {kind} c32 req/s": results["fmops"][f"{kind} c32"].rps
        / max(results["litellm"][f"{kind} c32"].rps, 1e-3)
        for kind in ("plain", "stream")
    } | {
        f"fmops/floor {kind} c32 req/s": results["fmops"][f"{kind} c32"].rps
        / max(results["floor"][f"{kind} c32"].rps, 1e-3)
        for kind in ("plain", "stream")
    }
    if args.endpoint:
        ratios["fmops endpoint/plain c32 req/s"] = endpoint_ratio(results["fmops"])
    save_result(
        "gateway_vs_litellm",
        {
            "litellm_version": version,
            "seconds": args.seconds,
            "runs": results,
            "ratios": ratios,
            "errors": errors,
            "fmops_spans_stored": spans,
            "fmops_successful_requests": served,
            # "within 20%": fmops endpoint/plain c32 req/s at least this
            "endpoint_target_ratio": ENDPOINT_TARGET if args.endpoint else None,
        },
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
