"""DSPy's few-shot random search on the same ticket-triage cases, split and budget as
`prompt_optimize.py`, through the same fmops gateway (its OpenAI-compatible /v1) and SmolLM2 model.

Run by `prompt_optimize.py --dspy` in DSPy's own venv (benchmarks/.venvs/dspy; DSPy is no dependency
of fmops), so this file imports nothing from fmops:

    benchmarks/.venvs/dspy/bin/python benchmarks/prompt_optimize_dspy.py JOB.json OUT.json

JOB.json: {"url", "key", "model", "instructions", "schema", "categories", "priorities", "opt": [cases],
"heldout": [cases], "budget", "threads"}, a case being {"input": ticket, "expected": {"category",
"priority"}}.

What it runs, and how it matches fmops's `fewshot` optimizer:
- the program: `dspy.Predict` of a signature whose instructions are prompt v1's system message
  (the label rules), input `ticket`, outputs `category` and `priority` (the schema's enums as
  Literal types), through `dspy.JSONAdapter` (one call per answer) with the answer's JSON schema as
  the response format (fmops's target sends the same: the gateway constrains both), temperature 0,
  DSPy's response cache off (every answer is a call to the gateway, counted by a callback);
- the optimizer: `BootstrapFewShotWithRandomSearch` (the zero-shot program, labelled demonstrations,
  then seeded sets of bootstrapped and labelled demonstrations, up to 4 in all as fmops's
  `max_demos`), trainset = valset = the optimisation half (as fmops searches on it; DSPy's valset
  includes a candidate's own demonstrations, fmops leaves them out); the number of candidate sets is
  chosen so that the search's expected calls fit the budget less the held-out reserve (the
  zero-shot program and the winner on the held-out half), as fmops reserves it;
- the figure: exact match (category and priority both right) on the held-out half, zero-shot and
  compiled, with a 95% bootstrap interval and McNemar's exact test, as fmops reports.
"""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import dspy
from dspy.utils.callback import BaseCallback


class Counter(BaseCallback):
    """Every LM call DSPy makes (its cache off: every one reaches the gateway)."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self._lock = threading.Lock()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            self.calls += 1

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        if exception is not None:
            with self._lock:
                self.errors += 1


def signature(instructions: str, categories: list[str], priorities: list[str]) -> type[dspy.Signature]:
    fields = {
        "ticket": (str, dspy.InputField()),
        "category": (Literal[tuple(categories)], dspy.OutputField()),
        "priority": (Literal[tuple(priorities)], dspy.OutputField()),
    }
    return dspy.make_signature(fields, instructions, signature_name="Triage")


def exact(example: dspy.Example, prediction: Any, trace: Any = None) -> bool:
    return bool(
        getattr(prediction, "category", None) == example.category
        and getattr(prediction, "priority", None) == example.priority
    )


def examples(cases: list[dict[str, Any]]) -> list[dspy.Example]:
    return [
        dspy.Example(
            ticket=c["input"], category=c["expected"]["category"], priority=c["expected"]["priority"]
        ).with_inputs("ticket")
        for c in cases
    ]


def scores(program: dspy.Module, cases: list[dspy.Example], threads: int) -> list[float]:
    evaluate = dspy.Evaluate(
        devset=cases, metric=exact, num_threads=threads, display_progress=False, max_errors=100_000
    )
    result = evaluate(program)
    return [float(bool(row[2])) for row in result.results]


def bootstrap_ci(values: list[float], seed: int = 0, rounds: int = 10_000) -> list[float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return [means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]]


def mcnemar(a: list[float], b: list[float]) -> float:
    """McNemar's exact (two-sided binomial) p on the discordant pairs."""
    up = sum(1 for x, y in zip(a, b, strict=True) if y > x)
    down = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    counter = Counter()
    lm = dspy.LM(
        f"openai/{job['model']}",
        api_base=job["url"].rstrip("/") + "/v1",
        api_key=job["key"],
        temperature=0,
        max_tokens=64,
        cache=False,
        num_retries=0,
        # The answer's JSON schema, as fmops's target sends it (prompt v1's output_schema): DSPy sends no
        # response_format to a model it has no metadata for, and unconstrained SmolLM2 rarely writes JSON.
        response_format={"type": "json_schema", "json_schema": {"name": "triage", "schema": job["schema"]}},
    )
    # An answer DSPy cannot parse scores 0 as a failed case, never stops the run.
    dspy.configure(lm=lm, adapter=dspy.JSONAdapter(), callbacks=[counter], max_errors=100_000)
    opt, held = examples(job["opt"]), examples(job["heldout"])
    program = dspy.Predict(signature(job["instructions"], job["categories"], job["priorities"]))
    threads = int(job.get("threads", 2))
    budget = int(job["budget"])
    reserve = 2 * len(held)
    # Expected search calls: the zero-shot and labelled programs score the valset (len(opt) each); a
    # bootstrapped set also runs the teacher over the trainset until it has its demonstrations (at the
    # start's accuracy that takes a handful of calls; counted as len(opt) // 4 here).
    per_set = len(opt) + max(4, len(opt) // 4)
    sets = max(0, (budget - reserve - 2 * len(opt) - per_set) // per_set)
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=exact,
        max_bootstrapped_demos=2,
        max_labeled_demos=4,
        num_candidate_programs=sets,
        num_threads=threads,
        max_errors=100_000,
    )
    started = time.monotonic()
    compiled = optimizer.compile(program, trainset=opt, valset=opt)
    search_calls, search_seconds = counter.calls, time.monotonic() - started
    candidates = [
        {"seed": c["seed"], "opt_score_percent": c["score"]}
        for c in getattr(compiled, "candidate_programs", [])
    ]
    a = scores(program, held, threads)
    b = scores(compiled, held, threads)
    seconds = time.monotonic() - started
    result = {
        "dspy_version": dspy.__version__,
        "optimizer": "BootstrapFewShotWithRandomSearch",
        "config": {"max_bootstrapped_demos": 2, "max_labeled_demos": 4, "num_candidate_programs": sets},
        "adapter": "JSONAdapter",
        "budget": budget,
        "calls": counter.calls,
        "lm_errors": counter.errors,
        "search_calls": search_calls,
        "search_seconds": round(search_seconds, 1),
        "seconds": round(seconds, 1),
        "candidates": candidates,
        "demos": len(compiled.demos),
        "heldout": {
            "n": len(held),
            "start": sum(a) / len(a),
            "start_ci": bootstrap_ci(a),
            "compiled": sum(b) / len(b),
            "compiled_ci": bootstrap_ci(b),
            "diff": (sum(b) - sum(a)) / len(a),
            "mcnemar_p": mcnemar(a, b),
        },
    }
    Path(sys.argv[2]).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["heldout"]), flush=True)


if __name__ == "__main__":
    main()
