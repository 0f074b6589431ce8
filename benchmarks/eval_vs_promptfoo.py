"""Eval runner: `fmops eval run` vs promptfoo's `promptfoo eval`, side by side, in one run, on this machine.

The same 200 cases x 2 targets against the mock upstream (tests/support/mock_upstream.py, model
`slow-100`: every answer takes 100 ms), scored by exact match and a regex, with the same concurrency
(fmops `concurrency:`, promptfoo `-j`). Both tools run pinned to core 0, the mock on core 1, each from a
cold process (start-up included, as a CI job sees it), with their caches off or missed (promptfoo
`--no-cache`; fmops a new seed per repetition, so no request repeats), fmops with its byte-code
compiled as an install has it (this machine sets PYTHONDONTWRITEBYTECODE, under which each start
compiled fmops's modules from source: runs before 2026-12-07 paid that). fmops calls every target through
its gateway in-process: limits, cost accounting and a traced span per call, written to SQLite.

Reported per tool (median of --repeat runs): wall time, peak memory (the process tree's summed RSS,
sampled every 10 ms) and CPU time; for fmops also the run's own time (its job, without start-up) and
CPU per call with the start-up's CPU taken out (measured by a run of one case: everything a run
imports and sets up, and two calls).
The ideal is cases x targets x 100 ms / concurrency (2.5 s by default).

    .venv/bin/python benchmarks/eval_vs_promptfoo.py [--cases 200] [--concurrency 16] [--repeat 3]

promptfoo (0.121, the last release for Node 20) is installed with npm into benchmarks/.venvs/promptfoo
on first run (`npm install promptfoo@0.121`); it is no dependency of fmops.
Raw figures: benchmarks/results/eval_vs_promptfoo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml
from _harness import BIN, ROOT, free_port, installed_env, load, pinned, process, save_result, wait_http

PROMPTFOO = "0.121"
PROMPTFOO_DIR = ROOT / "benchmarks" / ".venvs" / "promptfoo"
REPLY = "Hello from the mock upstream."
UPSTREAM = "slow-100"


def install_promptfoo() -> Path:
    binary = PROMPTFOO_DIR / "node_modules" / ".bin" / "promptfoo"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise SystemExit("npm is not installed: promptfoo cannot be installed (apt-get install npm)")
        PROMPTFOO_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", f"promptfoo@{PROMPTFOO}"], cwd=PROMPTFOO_DIR, check=True)
    return binary


def cases(n: int) -> list[dict[str, str]]:
    """Half the cases expect the mock's answer (exact match passes), half another one."""
    return [
        {"input": f"question {i}", "expected": REPLY if i % 2 == 0 else "Something else."} for i in range(n)
    ]


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Wall time, peak RSS of the process tree, CPU (user + sys of it and its children), exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = 0
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=600)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "peak_rss_mb": peak / 2**20,
        "cpu_s": cpu,
        "returncode": proc.returncode,
        "stdout": stdout.decode(errors="replace"),
        "stderr": stderr.decode(errors="replace")[-2000:],
    }


def fmops_suite(path: Path, n: int, concurrency: int, seed: int) -> None:
    suite = {
        "name": "bench",
        "seed": seed,
        "concurrency": concurrency,
        "cases": cases(n),
        "targets": [{"model": "target-a"}, {"model": "target-b"}],
        "scorers": [{"name": "exact_match"}, {"name": "regex", "config": {"pattern": "^Hello"}}],
    }
    path.write_text(yaml.safe_dump(suite))


def promptfoo_config(folder: Path, n: int, mock_url: str) -> Path:
    tests = [
        {
            "vars": {"input": c["input"]},
            "assert": [{"type": "equals", "value": c["expected"]}, {"type": "regex", "value": "^Hello"}],
        }
        for c in cases(n)
    ]
    provider = {"apiBaseUrl": mock_url, "apiKey": "sk-mock"}
    config = {
        "description": "bench",
        "prompts": ["{{input}}"],
        "providers": [
            {"id": f"openai:chat:{UPSTREAM}", "label": "target-a", "config": provider},
            {"id": f"openai:chat:{UPSTREAM}", "label": "target-b", "config": {**provider, "temperature": 0}},
        ],
        "tests": tests,
    }
    path = folder / "promptfooconfig.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fmops_run_time(home: Path, run_id: str) -> float | None:
    """The run's job, from claimed to finished (no process start-up)."""
    with sqlite3.connect(home / "fmops.db") as db:
        row = db.execute(
            "SELECT jobs.started_at, jobs.finished_at FROM jobs JOIN eval_runs ON eval_runs.job_id = jobs.id "
            "WHERE eval_runs.id = ?",
            (run_id,),
        ).fetchone()
    if not row or not row[0] or not row[1]:
        return None
    return (datetime.fromisoformat(row[1]) - datetime.fromisoformat(row[0])).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    calls = args.cases * 2
    ideal = calls * 0.1 / args.concurrency
    binary = install_promptfoo()
    load_before = load()
    work = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    home = work / "fmops-home"
    env = installed_env({k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")})
    env |= {"FMOPS_HOME": str(home), "FMOPS_LOG_LEVEL": "warning"}
    pf_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")},
        "PROMPTFOO_CONFIG_DIR": str(work / "promptfoo-home"),
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_DISABLE_SHARING": "1",
        "OPENAI_API_KEY": "sk-mock",
    }
    port = free_port()
    mock_url = f"http://127.0.0.1:{port}/v1"
    mock_argv = pinned(
        1, [sys.executable, str(ROOT / "tests" / "support" / "mock_upstream.py"), "--port", str(port)]
    )
    results: dict[str, Any] = {
        "cases": args.cases,
        "calls": calls,
        "concurrency": args.concurrency,
        "ideal_s": ideal,
    }
    fmops = str(BIN / "fmops")
    with process(mock_argv, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}):
        wait_http(f"http://127.0.0.1:{port}/_control/stats")
        for alias in ("target-a", "target-b"):
            subprocess.run(
                [
                    fmops,
                    "models",
                    "add",
                    alias,
                    "--provider",
                    "openai",
                    "--model",
                    UPSTREAM,
                    "--base-url",
                    mock_url,
                    "--input-price",
                    "0.15",
                    "--output-price",
                    "0.6",
                ],
                env=env,
                check=True,
                capture_output=True,
            )
        bad = work / "bad.yaml"
        bad.write_text("name: bad\ncases: [{input: x}]\ntargets: [{model: nope}]\nscorers: [exact_match]\n")
        baseline = measure(pinned(0, [fmops, "eval", "run", str(bad), "--json"]), env, work)
        assert baseline["returncode"] == 2, baseline["stderr"]
        # CPU per call leaves out start-up: the CPU of a run of one case (two calls), which imports
        # all that a run does, where the refused suite above stops before the run's own modules load.
        one = work / "one-case.yaml"
        fmops_suite(one, 1, args.concurrency, seed=0)
        one_case = measure(pinned(0, [fmops, "eval", "run", str(one), "--json"]), env, work)
        assert one_case["returncode"] == 0, one_case["stderr"]
        one_case.pop("stdout")
        config = promptfoo_config(work, args.cases, mock_url)
        fm_runs, pf_runs = [], []
        for rep in range(args.repeat):
            suite = work / f"suite-{rep}.yaml"
            fmops_suite(suite, args.cases, args.concurrency, seed=rep + 1)
            order = ["fmops", "promptfoo"] if rep % 2 == 0 else ["promptfoo", "fmops"]
            for tool in order:
                if tool == "fmops":
                    m = measure(pinned(0, [fmops, "eval", "run", str(suite), "--json"]), env, work)
                    assert m["returncode"] == 0, m["stderr"]
                    out = json.loads(m.pop("stdout"))
                    targets = out["summary"]["targets"]
                    assert all(t["errors"] == 0 and t["ok"] == args.cases for t in targets), targets
                    assert all(t["scorers"]["exact_match"]["mean"] == 0.5 for t in targets), targets
                    m["run_s"] = fmops_run_time(home, out["run"]["id"])
                    m["cpu_ms_per_call"] = (m["cpu_s"] - one_case["cpu_s"]) / (calls - 2) * 1000
                    m["cpu_ms_per_call_with_startup"] = m["cpu_s"] / calls * 1000
                    fm_runs.append(m)
                else:
                    output = work / f"promptfoo-{rep}.json"
                    argv = [
                        str(binary),
                        "eval",
                        "-c",
                        str(config),
                        "-j",
                        str(args.concurrency),
                        "--no-cache",
                        "--no-write",
                        "--no-table",
                        "--no-progress-bar",
                        "-o",
                        str(output),
                    ]
                    m = measure(pinned(0, argv), pf_env, work)
                    m.pop("stdout")
                    stats = json.loads(output.read_text())["results"]["stats"]
                    assert stats["successes"] + stats["failures"] == calls, stats
                    assert stats.get("errors", 0) == 0, stats
                    m["successes"], m["failures"] = stats["successes"], stats["failures"]
                    m["cpu_ms_per_call_with_startup"] = m["cpu_s"] / calls * 1000
                    pf_runs.append(m)
                print(
                    f"{tool:9s} rep {rep}: {m['wall_s']:.2f} s, "
                    f"{m['peak_rss_mb']:.0f} MB, cpu {m['cpu_s']:.2f} s"
                )
    baseline.pop("stdout")

    def median(runs: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    fm = {
        k: median(fm_runs, k)
        for k in (
            "wall_s",
            "run_s",
            "peak_rss_mb",
            "cpu_s",
            "cpu_ms_per_call",
            "cpu_ms_per_call_with_startup",
        )
    }
    pf = {k: median(pf_runs, k) for k in ("wall_s", "peak_rss_mb", "cpu_s", "cpu_ms_per_call_with_startup")}
    results |= {
        "fmops": {"median": fm, "runs": fm_runs, "startup_baseline": baseline, "one_case": one_case},
        "promptfoo": {"version": PROMPTFOO, "median": pf, "runs": pf_runs},
        "ratios": {
            "wall_fmops_over_promptfoo": fm["wall_s"] / pf["wall_s"],
            "wall_fmops_over_ideal": fm["wall_s"] / ideal,
            "run_fmops_over_ideal": (fm["run_s"] / ideal) if fm["run_s"] else None,
            "memory_fmops_over_promptfoo": fm["peak_rss_mb"] / pf["peak_rss_mb"],
        },
    }
    print(json.dumps({"ideal_s": ideal, "fmops": fm, "promptfoo": pf, "ratios": results["ratios"]}, indent=2))
    save_result("eval_vs_promptfoo", results, load_before=load_before)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
