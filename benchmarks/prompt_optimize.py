"""Prompt optimisation on the quickstart's ticket-triage task (issue 20): held-out exact match of the
base SmolLM2-135M with prompt v1, before and after each optimizer (fewshot, instructions, gepa), with
95% intervals and the paired test, beside the LoRA fine-tune's figure from
benchmarks/results/quickstart.json; each optimizer's wall time, calls and dropped proposals.

    .venv/bin/python benchmarks/prompt_optimize.py [--cases 60] [--budget 300] [--optimizers fewshot,...]

A fresh `fmops up` in a temporary home; each optimisation is started as `fmops prompts optimize`
starts it and runs on the server's job worker, through the gateway, with SmolLM2 (llama.cpp, CPU) as
the target and as the optimizer model (no other model is available offline). The cases are the
quickstart's held-out generator tickets (seed 2), split by the suite's seed into optimisation and
held-out halves; every optimizer starts from v1 and is judged on the same held-out half.

DSPy 3.4.1 installs into its own venv (benchmarks/.venvs/dspy) and runs offline against the gateway as an
OpenAI-compatible base URL (`dspy.LM("openai/smollm2-135m-instruct", api_base=...)`: one `Predict` answered;
its model-metadata refresh fails offline and it uses its bundled copy), but its optimizer was not run here:
on the loaded shared machine one SmolLM2 call through the gateway took ~20 s, so a DSPy search on the same
budget would not have finished in the session. It is no dependency of fmops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import BIN, ROOT, free_port, load, process, save_result, wait_http

from fmops.quickstart import prompt
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


def optimise(home: Path, name: str, cases: int, budget: int) -> dict[str, Any]:
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
        Request(prompt=f"{prompt.NAME}@1", suite=suite(cases), optimizer=name, budget=budget, holdout=0.5),
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--budget", type=int, default=300, help="calls per optimizer")
    parser.add_argument("--optimizers", default="fewshot,instructions,gepa")
    parser.add_argument("--result", default="prompt_optimize", help="benchmarks/results/RESULT.json")
    args = parser.parse_args()
    before = load()
    figures: dict[str, Any] = {"cases": args.cases, "budget_per_optimizer": args.budget, "optimizers": {}}
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
            for name in args.optimizers.split(","):
                print(f"{name}: optimising (budget {args.budget} calls) …", flush=True)
                row = optimise(home, name, args.cases, args.budget)
                figures["optimizers"][name] = row
                held = row["heldout"] or row["best_not_pushed"] or {}
                print(
                    f"{name}: {row['status']} in {row['seconds']:.0f} s, {row['calls']} calls "
                    f"({row['dropped']} dropped); held-out exact match {_pct(held.get('mean_a'))} -> "
                    f"{_pct(held.get('mean_b'))} (p = {held.get('p_value')}) {row['reason'] or ''}",
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
