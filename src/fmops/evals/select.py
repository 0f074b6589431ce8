"""Model selection: run a suite's cases on candidate models and rank them by quality, latency and cost.

The candidates replace the suite's targets: each becomes the suite's first target with its model
swapped (the same prompt version and parameters when that target is a prompt, else the same
parameters), so every candidate answers the same requests. The recommendation is the cheapest
candidate whose mean score lies within the best candidate's 95% bootstrap interval and that is not
significantly worse than it in the paired test (ties on cost go to the lower median latency); when
no other candidate qualifies, the best is recommended alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fmops.evals.suite import SuiteError, read_suite

JSON = dict[str, Any]


def candidate_suite(raw: str | bytes | Mapping[str, Any], candidates: Sequence[str]) -> JSON:
    """The suite with one target per candidate model (a SuiteError when there are none)."""
    data = read_suite(raw)
    names = [c.strip() for c in candidates if c.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise SuiteError(["--candidates: at least two distinct model aliases, comma-separated"])
    targets = data.get("targets")
    first = targets[0] if isinstance(targets, list) and targets and isinstance(targets[0], dict) else {}
    if first.get("endpoint") is not None:
        raise SuiteError(["targets.0: an endpoint fixes its model; make the first target a model or prompt"])
    template = {k: v for k, v in first.items() if k in ("prompt", "parameters")}
    data["targets"] = [{**template, "model": name, "name": name} for name in names]
    return data


def rank(
    summary: Mapping[str, Any], comparisons: Sequence[Mapping[str, Any]], licences: Mapping[str, Any]
) -> JSON:
    """Candidates best first, and the recommendation with the trade-off in words."""
    rows = []
    for target in summary["targets"]:
        rows.append(
            {
                "model": target["name"],
                "score": target["score"]["mean"],
                "ci": target["score"]["ci"],
                "errors": target["errors"],
                "p50_ms": target["latency_ms"]["p50"],
                "cost_per_case": target["cost"]["per_case"],
                "license": licences.get(target["name"]),
            }
        )
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["cost_per_case"] or 0.0))
    scored = [r for r in rows if r["score"] is not None]
    if not scored:
        return {"ranking": rows, "recommended": None, "reason": "no candidate answered a case"}
    best = scored[0]
    low = best["ci"][0] if best["ci"] else best["score"]

    def worse_than_best(model: str) -> bool:
        for c in comparisons:
            pair = {c["a"], c["b"]}
            if pair == {model, best["model"]} and c["significant"]:
                best_is_b = c["b"] == best["model"]
                return bool((c["diff"] > 0) == best_is_b)  # diff is b - a
        return False

    near = [r for r in scored if r["score"] >= low and (r is best or not worse_than_best(r["model"]))]
    pick = min(near, key=lambda r: (r["cost_per_case"] or 0.0, r["p50_ms"] or 0.0))
    for r in rows:
        r["within_best_ci"] = r in near
    if pick is best:
        reason = f"{best['model']} scores best ({_fmt(best)})"
        if len(near) > 1:
            reason += " and is also the cheapest of those within its interval"
    else:
        reason = (
            f"{pick['model']} is the cheapest within the best's 95% interval: score {_fmt(pick)} vs "
            f"{best['model']} {_fmt(best)}, not significantly worse; cost per case "
            f"{_money(pick['cost_per_case'])} vs {_money(best['cost_per_case'])}, p50 "
            f"{_ms(pick['p50_ms'])} vs {_ms(best['p50_ms'])}"
        )
    return {"ranking": rows, "recommended": pick["model"], "reason": reason}


def _fmt(row: Mapping[str, Any]) -> str:
    ci = row.get("ci")
    return f"{row['score']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
