"""Gateway processes: fmops with 1 and 2 server processes (`fmops up --gateway-workers N`) beside LiteLLM's
proxy with `--num_workers 1` and `2`, in one run, on this machine.

fmops runs as it scales out: PostgreSQL for keys and traces, Redis for rate limits, budgets and the cache
(more than one process needs Redis), auth, limits, cost accounting and tracing on. LiteLLM runs with a
master key and no database (as in gateway_vs_litellm.py). Plain (non-streaming) chat calls at
concurrency 32 against the mock upstream (tests/support/mock_upstream.py), measured by wrk, in two
layouts:

- pinned: every gateway process on core 0, the mock and wrk on core 1 (the cost of one gateway core);
- shared: nothing pinned, gateway, mock and wrk share both cores (what a second process buys here).

    .venv/bin/python benchmarks/gateway_workers.py [--seconds 10] [--litellm-venv DIR]

Needs PostgreSQL (FMOPS_BENCH_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
and Redis (FMOPS_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0). LiteLLM is installed into
benchmarks/.venvs as gateway_vs_litellm.py does. Raw figures: benchmarks/results/gateway_workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
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
from gateway_vs_litellm import LITELLM, MASTER_KEY, MODEL, pinned_litellm
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES = os.environ.get("FMOPS_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FMOPS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LAYOUTS = ("pinned", "shared")


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"fmops_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def placed(layout: str, core: int, argv: list[str]) -> list[str]:
    return pinned(core, argv) if layout == "pinned" else argv


def measure(url: str, body: Path, headers: dict[str, str], seconds: int, layout: str) -> WrkResult:
    # wrk on core 1 beside the mock, or (shared) on every core: taskset with all cores is no pinning.
    core: Any = 1 if layout == "pinned" else f"0-{(os.cpu_count() or 1) - 1}"
    wrk(url, body, connections=4, seconds=2, core=core, headers=headers)  # warm-up, not counted
    return wrk(url, body, connections=32, seconds=seconds, core=core, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--litellm-venv", type=Path, default=ROOT / "benchmarks" / ".venvs" / f"litellm-{LITELLM}"
    )
    args = parser.parse_args()
    litellm = pinned_litellm(args.litellm_venv)
    version = LITELLM
    redis.Redis.from_url(REDIS).ping()
    load_before = load()
    work = Path(tempfile.mkdtemp(prefix="fmops-bench-workers-"))
    body = work / "plain.json"
    body.write_text(
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16})
    )
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}/v1"
    json_headers = {"Content-Type": "application/json"}
    results: dict[str, dict[str, WrkResult]] = {layout: {} for layout in LAYOUTS}
    prefix = f"fmops-bench:{uuid.uuid4().hex[:10]}:"

    mock_argv = [
        sys.executable,
        str(ROOT / "tests" / "support" / "mock_upstream.py"),
        "--port",
        str(mock_port),
    ]
    with (
        scratch_database() as database,
        process(pinned(1, mock_argv), env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}),
    ):
        wait_http(f"http://127.0.0.1:{mock_port}/_control/stats")
        home = work / "fmops-home"
        base = {
            **os.environ,
            "FMOPS_HOME": str(home),
            "FMOPS_WORKERS": "0",
            "FMOPS_DATABASE_URL": database,
            "FMOPS_REDIS_URL": REDIS,
            "FMOPS_REDIS_PREFIX": prefix,
        }
        key = mock_model_and_key(base, mock_url, MODEL)
        auth = {**json_headers, "Authorization": f"Bearer {key}"}
        for layout in LAYOUTS:
            for n in (1, 2):
                port = free_port()
                env = {**base, "FMOPS_PORT": str(port), "FMOPS_GATEWAY_WORKERS": str(n)}
                argv = placed(layout, 0, [str(BIN / "fmops"), "up"])
                with process(argv, env=env, log=work / f"fmops-{layout}-{n}.log"):
                    wait_http(f"http://127.0.0.1:{port}/readyz")
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    results[layout][f"fmops {n}"] = measure(url, body, auth, args.seconds, layout)
                    print(f"{layout} fmops {n}: {results[layout][f'fmops {n}'].rps:.0f} req/s", flush=True)

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
        lauth = {**json_headers, "Authorization": f"Bearer {MASTER_KEY}"}
        for layout in LAYOUTS:
            for n in (1, 2):
                port = free_port()
                argv = [str(litellm), "--config", str(config), "--port", str(port), "--num_workers", str(n)]
                # uvicorn kills a worker that does not answer its health check in 5 s; on a loaded machine
                # LiteLLM's workers take longer to import, and are killed and restarted for ever.
                argv += ["--timeout_worker_healthcheck", "600"]
                with process(placed(layout, 0, argv), env=lenv, log=work / f"litellm-{layout}-{n}.log"):
                    # LiteLLM imports its proxy in every worker: minutes on a loaded machine.
                    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=900)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    results[layout][f"litellm {n}"] = measure(url, body, lauth, args.seconds, layout)
                    print(
                        f"{layout} litellm {n}: {results[layout][f'litellm {n}'].rps:.0f} req/s", flush=True
                    )

    print(
        f"\nplain chat calls, concurrency 32, {args.seconds}s each; LiteLLM {version}; {os.cpu_count()} cores"
    )
    print(f"{'layout':<8}{'gateway':<12}{'1 process':>22}{'2 processes':>22}{'2/1':>7}")
    ratios: dict[str, float] = {}
    for layout in LAYOUTS:
        for name in ("fmops", "litellm"):
            one, two = results[layout][f"{name} 1"], results[layout][f"{name} 2"]
            ratio = two.rps / max(one.rps, 1e-3)
            ratios[f"{layout} {name} 2/1"] = ratio
            cells = [f"{r.rps:7.0f}/s p99 {r.p99_ms:6.1f}ms" for r in (one, two)]
            print(f"{layout:<8}{name:<12}{cells[0]:>22}{cells[1]:>22}{ratio:>6.2f}x")
        for n in (1, 2):
            f, lt = results[layout][f"fmops {n}"], results[layout][f"litellm {n}"]
            ratios[f"{layout} fmops/litellm {n}"] = f.rps / max(lt.rps, 1e-3)
    errors = {f"{layout} {name}": r.errors for layout in LAYOUTS for name, r in results[layout].items()}
    print("fmops/litellm: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items() if "/litellm" in k))
    print(f"errors: {errors}")
    save_result(
        "gateway_workers",
        {
            "litellm_version": version,
            "seconds": args.seconds,
            "runs": results,
            "ratios": ratios,
            "errors": errors,
        },
        load_before=load_before,
    )
    client = redis.Redis.from_url(REDIS)
    stale = list(client.scan_iter(match=prefix + "*"))
    if stale:
        client.delete(*stale)


if __name__ == "__main__":
    main()
