"""The full `fmops quickstart` on this machine: the loop's time per stage, and whether the fine-tune
wins. Targets (issue 16): under 15 minutes; the fine-tuned model beats the base on exact match by at
least 30 points at p < 0.01 on the held-out generated tickets, with valid JSON at least 95%; and its
exact match on 40 hand-written tickets (tests/data/triage_handwritten.jsonl, styles the generator
does not use) next to the base's.

    .venv/bin/python benchmarks/quickstart.py            # a fresh server in a temporary home
    .venv/bin/python benchmarks/quickstart.py --url URL --api-key KEY

There is no peer to run side by side: no open-source peer runs this loop on one machine. The figures
are the quickstart's own, printed as the gain over the base model.
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
from _harness import BIN, free_port, load, save_result, wait_http

from fmops.quickstart import handwritten
from fmops.quickstart.api import Api
from fmops.quickstart.stages import targets_of, triage_suite


def run_quickstart(url: str, key: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    args = [str(BIN / "fmops"), "quickstart", "--json", "--url", url, "--api-key", key]
    done = subprocess.run(args, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"fmops quickstart failed ({done.returncode})")
    return json.loads(done.stdout), seconds


def handwritten_eval(api: Api, result: dict[str, Any]) -> dict[str, Any]:
    """Both models, each with the prompt it was evaluated with, on the 40 hand-written tickets."""
    tickets = handwritten.load()
    cases = [{"input": t.text, "expected": t.label(), "metadata": {"id": t.id}} for t in tickets]
    suite = triage_suite(
        "ticket-triage-handwritten", cases, result["prompt_versions"], result["finetuned_model"], 2
    )
    run = api.post("/api/evals/runs", {"suite": suite})
    api.wait(f"/api/jobs/{run['job_id']}")
    state = api.get(f"/api/evals/runs/{run['id']}")
    pairs = api.get(f"/api/evals/runs/{run['id']}/compare")
    return {
        "run": run["id"],
        "cases": len(tickets),
        "targets": targets_of(state["summary"]),
        "comparison": pairs[0] if pairs else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    before = load()
    with tempfile.TemporaryDirectory(prefix="fmops-quickstart-") as home:
        proc = None
        url, key = args.url, args.api_key
        if url is None:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
            env.update({"FMOPS_HOME": home, "FMOPS_PORT": str(port)})
            with Path(home, "server.log").open("wb") as log:  # the child keeps its own descriptor
                proc = subprocess.Popen([str(BIN / "fmops"), "up"], env=env, stdout=log, stderr=log)
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/readyz")
            key = Path(home, "admin.key").read_text().strip()
        try:
            result, seconds = run_quickstart(url, key)
            api = Api(url, key)
            try:
                human = handwritten_eval(api, result)
            finally:
                api.close()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(60)
    base, tuned = result["targets"]["base"], result["targets"]["finetuned"]
    gain = (tuned["exact_match"] - base["exact_match"]) * 100
    p_value = result["comparison"].get("p_value")
    h_base, h_tuned = human["targets"]["base"], human["targets"]["finetuned"]
    figures = {
        "total_seconds": round(seconds, 1),
        "stages": result["stages"],
        "generated": {"base": base, "finetuned": tuned, "gain_points": round(gain, 1), "p_value": p_value},
        "handwritten": human,
        "promoted": result["promoted"],
        "experiment": result["experiment"],
        "curation": result["curation"],
        "traffic": result["traffic"],
        "final_loss": result["final_loss"],
        "targets_met": {
            "under_15_minutes": seconds < 15 * 60,
            "gain_at_least_30_points": gain >= 30,
            "significant_p_below_0_01": p_value is not None and p_value < 0.01,
            "valid_json_at_least_95": (tuned["valid_json"] or 0) >= 0.95,
        },
    }
    path = save_result("quickstart", figures, load_before=before)
    print(
        f"whole run {seconds / 60:.1f} min (target < 15): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result["stages"].items())
    )
    print(
        f"held-out generated tickets ({base.get('cases')}): exact match {base['exact_match']:.0%} -> "
        f"{tuned['exact_match']:.0%} ({gain:+.0f} points, p = {p_value:.2g}); valid JSON "
        f"{base['valid_json']:.0%} -> {tuned['valid_json']:.0%}"
    )
    print(
        f"hand-written tickets ({human['cases']}): exact match {h_base['exact_match']:.0%} -> "
        f"{h_tuned['exact_match']:.0%}; valid JSON {h_base['valid_json']:.0%} -> {h_tuned['valid_json']:.0%}"
    )
    print(f"A/B: {result['experiment'].get('verdict')}; promoted: {result['promoted']}")
    print(f"targets met: {figures['targets_met']}; raw figures: {path}")


if __name__ == "__main__":
    main()
