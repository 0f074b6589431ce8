"""Prompt optimisation on the quickstart's ticket-triage task (issue 20): held-out exact match of the
base SmolLM2-135M with prompt v1, before and after each optimizer (fewshot, instructions, gepa), with
95% intervals and the paired test, beside the LoRA fine-tune's figure from
benchmarks/results/quickstart.json; each optimizer's wall time, calls and dropped proposals.

    .venv/bin/python benchmarks/prompt_optimize.py [--cases 60] [--holdout 0.5] [--budget 300]
        [--optimizers fewshot,...] [--dspy]

A fresh `fmops up` in a temporary home; each optimisation is started as `fmops prompts optimize`
starts it and runs on the server's job worker, through the gateway, with SmolLM2 (llama.cpp, CPU) as
the target and as the optimizer model (no other model is available offline). The cases are the
quickstart's held-out generator tickets (seed 2), split by the suite's seed into optimisation and
held-out halves; every optimizer starts from v1 and is judged on the same held-out half.

`--dspy` also runs DSPy's `BootstrapFewShotWithRandomSearch` (benchmarks/prompt_optimize_dspy.py, in
its own venv benchmarks/.venvs/dspy with dspy==3.4.1; DSPy is no dependency of fmops) against the same
server's OpenAI-compatible /v1, with the same model, cases, split and budget, scored by exact match.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BIN, ROOT, free_port, load, process, save_result, wait_http

from fmops.optimizers.service import split
from fmops.quickstart import prompt
from fmops.quickstart.rules import CATEGORY_NAMES, PRIORITY_NAMES
from fmops.quickstart.stages import BASE_MODEL, EVAL_SEED
from fmops.quickstart.tickets import generate


def suite(cases: int) -> dict[str, Any]:
    tickets = generate(cases, EVAL_SEED, split="eval")
    return {
        "name": "ticket-triage-optimize",
        "cases": [{"input": t.text, "expected": t.label()} for t in tickets],
        "targets": [{"name": "base", "model": BASE_MODEL, "prompt": f"{prompt.NAME}@1"}],
        "scorers": [
            {"name": "exact_match"},
            {"name": "json_schema", "config": {"schema": prompt.SCHEMA}, "weight": 0},
        ],
        "concurrency": 2,
        "seed": 0,
    }


DSPY_VENV = ROOT / "benchmarks" / ".venvs" / "dspy"


def optimise(home: Path, name: str, cases: int, budget: int, holdout: float) -> dict[str, Any]:
    """One optimisation, started in this process against the server's database, run by its worker."""
    os.environ["FMOPS_HOME"] = str(home)
    from fmops.optimizers.job import service_for
    from fmops.optimizers.service import Request
    from fmops.platform import Platform
    from fmops.settings import load_settings

    settings = load_settings()
    platform = Platform.build(settings)
    key = (home / "admin.key").read_text().strip()
    principal = platform.auth.authenticate(key)
    service = service_for(platform.store, settings, platform.jobs)
    started = time.monotonic()
    run = service.start(
        principal.project_id,
        Request(
            prompt=f"{prompt.NAME}@1", suite=suite(cases), optimizer=name, budget=budget, holdout=holdout
        ),
        created_by_key_id=principal.key_id,
    )
    assert run.job_id is not None
    while True:
        job = platform.jobs.get(run.job_id, principal.project_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        print(f"  {name}: {job.message or job.status}", flush=True)
        time.sleep(15)
    seconds = time.monotonic() - started
    run = service.get(principal.project_id, run.id)
    result = dict(run.result or {})
    held = result.get("heldout") or {}
    return {
        "run": run.id,
        "status": run.status,
        "error": run.error or job.error,
        "seconds": round(seconds, 1),
        "calls": run.calls,
        "budget": budget,
        "spent": result.get("spent"),
        "cached": result.get("cached"),
        "dropped": run.dropped,
        "candidates": result.get("candidates"),
        "pushed_version": run.pushed_version,
        "start_opt": result.get("start_opt"),
        "winner_opt": result.get("winner_opt"),
        "heldout": held,
        "heldout_start": result.get("heldout_start"),
        "heldout_start_ci": result.get("heldout_start_ci"),
        "best_not_pushed": result.get("heldout_best"),
        "heldout_winner_ci": result.get("heldout_winner_ci"),
        "reason": result.get("reason"),
        "message": result.get("message"),
        "split": run.definition["split"],
    }


def dspy_search(url: str, key: str, cases: int, budget: int, holdout: float, home: Path) -> dict[str, Any]:
    """DSPy's few-shot random search on the same cases and split, in its own venv (a subprocess)."""
    python = DSPY_VENV / "bin" / "python"
    if not python.exists():
        return {
            "error": f"no DSPy venv: python3 -m venv {DSPY_VENV} && {DSPY_VENV}/bin/pip install dspy==3.4.1"
        }
    data = suite(cases)["cases"]
    opt, held = split(len(data), holdout, 0)
    job = {
        "url": url,
        "key": key,
        "model": BASE_MODEL,
        "instructions": prompt.SYSTEM,
        "schema": prompt.SCHEMA,
        "categories": list(CATEGORY_NAMES),
        "priorities": list(PRIORITY_NAMES),
        "opt": [data[i] for i in opt],
        "heldout": [data[i] for i in held],
        "budget": budget,
        "threads": suite(cases)["concurrency"],
    }
    (home / "dspy-job.json").write_text(json.dumps(job))
    out = home / "dspy-result.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            str(python),
            str(ROOT / "benchmarks" / "prompt_optimize_dspy.py"),
            str(home / "dspy-job.json"),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0 or not out.exists():
        return {"error": f"exit {done.returncode}: {done.stderr[-3000:]}", "seconds": seconds}
    result: dict[str, Any] = json.loads(out.read_text())
    return {
        **result,
        "wall_seconds": seconds,
        "split": {"seed": 0, "holdout": holdout, "opt": opt, "heldout": held},
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--budget", type=int, default=300, help="calls per optimizer")
    parser.add_argument("--holdout", type=float, default=0.5, help="the held-out fraction of the cases")
    parser.add_argument("--optimizers", default="fewshot,instructions,gepa")
    parser.add_argument("--dspy", action="store_true", help="also DSPy's random search (its own venv)")
    parser.add_argument("--result", default="prompt_optimize", help="benchmarks/results/RESULT.json")
    args = parser.parse_args()
    before = load()
    figures: dict[str, Any] = {
        "cases": args.cases,
        "holdout": args.holdout,
        "budget_per_optimizer": args.budget,
        "optimizers": {},
    }
    with tempfile.TemporaryDirectory(prefix="fmops-optimize-") as tmp:
        home = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
        env.update({"FMOPS_HOME": str(home), "FMOPS_PORT": str(port)})
        url = f"http://127.0.0.1:{port}"
        with process([str(BIN / "fmops"), "up"], env=env, log=home / "server.log"):
            wait_http(url + "/readyz", timeout=300)
            key = (home / "admin.key").read_text().strip()
            import httpx

            pushed = httpx.post(
                url + "/api/prompts",
                json=prompt.spec().model_dump(mode="json", exclude_none=True),
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
            pushed.raise_for_status()
            for name in [n for n in args.optimizers.split(",") if n]:
                print(f"{name}: optimising (budget {args.budget} calls) …", flush=True)
                row = optimise(home, name, args.cases, args.budget, args.holdout)
                figures["optimizers"][name] = row
                held = row["heldout"] or row["best_not_pushed"] or {}
                print(
                    f"{name}: {row['status']} in {row['seconds']:.0f} s, {row['calls']} calls "
                    f"({row['dropped']} dropped); held-out exact match {_pct(held.get('mean_a'))} -> "
                    f"{_pct(held.get('mean_b'))} (p = {held.get('p_value')}) {row['reason'] or ''}",
                    flush=True,
                )
                save_result(args.result, figures, load_before=before)  # kept if a later one never ends
            if args.dspy:
                print(f"dspy: BootstrapFewShotWithRandomSearch (budget {args.budget} calls) …", flush=True)
                row = dspy_search(url, key, args.cases, args.budget, args.holdout, home)
                figures["dspy"] = row
                held = row.get("heldout") or {}
                print(
                    f"dspy: {row.get('wall_seconds')} s, {row.get('calls')} calls; held-out exact match "
                    f"{_pct(held.get('start'))} -> {_pct(held.get('compiled'))} "
                    f"(p = {held.get('mcnemar_p')}) "
                    f"{row.get('error') or ''}",
                    flush=True,
                )
    quickstart = json.loads((ROOT / "benchmarks" / "results" / "quickstart.json").read_text())["results"]
    figures["lora_finetune_quickstart"] = {
        "note": "benchmarks/results/quickstart.json: 120 held-out generated tickets (a superset of these)",
        "base": quickstart["generated"]["base"],
        "finetuned": quickstart["generated"]["finetuned"],
        "gain_points": quickstart["generated"]["gain_points"],
        "p_value": quickstart["generated"]["p_value"],
    }
    lora = figures["lora_finetune_quickstart"]
    print(
        f"LoRA fine-tune (quickstart, 120 tickets): exact match {_pct(lora['base']['exact_match'])} -> "
        f"{_pct(lora['finetuned']['exact_match'])} ({lora['gain_points']:+.0f} points)"
    )
    save_result(args.result, figures, load_before=before)


if __name__ == "__main__":
    main()
