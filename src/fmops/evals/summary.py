"""A run's aggregates (per target and per scorer, with bootstrap intervals), its quality gate, and
paired comparisons between targets of one run or between two runs.

Errors (the target failed to answer) are counted apart and left out of the means: a model that
times out is not a model that answers wrongly. A target with no scored case fails every gate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

from fmops.evals.stats import ALPHA, bootstrap_ci, mcnemar_exact, paired_test, percentile
from fmops.scorers.base import Aggregate, ScoreResult

Row = Mapping[str, Any]
# A scorer's run-level metric over one target's results, when it is not their mean (macro-F1, corpus
# BLEU): `Scorer.aggregate` of the scorers that declare `aggregates`.
Aggregator = Callable[[Sequence[ScoreResult]], Aggregate]
AGGREGATE_RESAMPLES = 300  # each resample calls the scorer's aggregate in Python: fewer than the mean's


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _value(row: Row, scorer: str) -> float | None:
    verdict = (row.get("scores") or {}).get(scorer)
    return None if not isinstance(verdict, dict) else verdict.get("value")


def _verdicts(rows: Sequence[Row], scorer: str) -> list[ScoreResult]:
    found = []
    for row in rows:
        verdict = (row.get("scores") or {}).get(scorer)
        if isinstance(verdict, dict):
            value, label = verdict.get("value"), verdict.get("label")
            found.append(
                ScoreResult(
                    value,
                    label or ("error" if value is None else None),
                    verdict.get("comment"),
                    verdict.get("data"),
                )
            )
    return found


def _aggregated(results: list[ScoreResult], aggregate: Aggregator, seed: int) -> dict[str, Any]:
    """The scorer's own aggregate, with a percentile bootstrap interval over resampled cases."""
    import numpy as np

    whole = aggregate(results)
    ci = None
    if whole.value is not None and len(results) > 1:
        rng = np.random.default_rng(seed)
        values = []
        for _ in range(AGGREGATE_RESAMPLES):
            picked = rng.integers(0, len(results), size=len(results))
            value = aggregate([results[i] for i in picked]).value
            if value is not None:
                values.append(value)
        if values:
            low, high = np.percentile(values, [2.5, 97.5])
            ci = (float(low), float(high))
    return {
        "mean": whole.value,
        "ci": ci,
        "n": whole.count,
        "undecided": whole.undecided,
        "metrics": dict(whole.metrics),
        "details": dict(whole.details),
    }


def summarize(
    rows: Sequence[Row], definition: Mapping[str, Any], aggregators: Mapping[str, Aggregator] | None = None
) -> dict[str, Any]:
    """Aggregates of a run's result rows; `definition` is the suite as it ran (`Suite.as_dict`).

    A scorer in `aggregators` is summarised by its own aggregate (its `mean` is then that metric:
    macro-F1, corpus BLEU...); the others by the mean of their values."""
    seed = int(definition.get("seed", 0))
    by_target: dict[int, list[Row]] = {}
    for row in rows:
        by_target.setdefault(int(row["target_index"]), []).append(row)
    targets = []
    for index, spec in enumerate(definition["targets"]):
        mine = by_target.get(index, [])
        ok = [r for r in mine if r["status"] == "ok"]
        scored = [float(r["score"]) for r in ok if r.get("score") is not None]
        scorers = {}
        for scorer in definition["scorers"]:
            name = scorer["name"]
            if aggregators and name in aggregators:
                agg = _aggregated(_verdicts(ok, name), aggregators[name], seed)
            else:
                values = [v for v in (_value(r, name) for r in ok) if v is not None]
                agg = {
                    "mean": _mean(values),
                    "ci": bootstrap_ci(values, seed=seed),
                    "n": len(values),
                    "undecided": len(ok) - len(values),
                }
            mean, threshold = agg["mean"], scorer.get("threshold")
            scorers[name] = {
                **agg,
                "weight": scorer.get("weight", 1.0),
                "threshold": threshold,
                "passed": None if threshold is None else (mean is not None and mean >= threshold),
            }
        latencies = [float(r["latency_ms"]) for r in ok if r.get("latency_ms") is not None]
        costs = [float(r["cost"]) for r in mine if r.get("cost") is not None]
        targets.append(
            {
                "index": index,
                "name": spec["name"],
                "kind": "endpoint" if spec.get("endpoint") else ("prompt" if spec.get("prompt") else "model"),
                "cases": len(mine),
                "ok": len(ok),
                "errors": len(mine) - len(ok),
                "error_rate": (len(mine) - len(ok)) / len(mine) if mine else None,
                "score": {"mean": _mean(scored), "ci": bootstrap_ci(scored, seed=seed), "n": len(scored)},
                "scorers": scorers,
                "latency_ms": {
                    "mean": _mean(latencies),
                    "p50": percentile(latencies, 50),
                    "p95": percentile(latencies, 95),
                },
                "cost": {"total": sum(costs), "per_case": _mean(costs)},
                "spent": sum(float(r["cost"] or 0) for r in mine if not r.get("cached")),
                "cached": sum(1 for r in mine if r.get("cached")),
            }
        )
    return {"targets": targets, "comparisons": compare_targets(rows, definition), "seed": seed}


def compare_targets(rows: Sequence[Row], definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every pair of targets of one run, on the cases both scored (weighted score)."""
    seed = int(definition.get("seed", 0))
    names = [t["name"] for t in definition["targets"]]
    scores: dict[int, dict[int, float]] = {i: {} for i in range(len(names))}
    for row in rows:
        if row["status"] == "ok" and row.get("score") is not None:
            scores[int(row["target_index"])][int(row["case_index"])] = float(row["score"])
    out = []
    for i, j in combinations(range(len(names)), 2):
        common = sorted(set(scores[i]) & set(scores[j]))
        test = paired_test([scores[i][c] for c in common], [scores[j][c] for c in common], seed=seed)
        out.append({"a": names[i], "b": names[j], **test.as_dict()})
    return out


def compare_runs(
    rows_a: Sequence[Row], def_a: Mapping[str, Any], rows_b: Sequence[Row], def_b: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each target the two runs share (by name), paired on the cases both scored (by content:
    the same input and expected value), b against a: a negative `diff` is a regression."""
    seed = int(def_b.get("seed", 0))
    names_a = {t["name"]: i for i, t in enumerate(def_a["targets"])}
    names_b = {t["name"]: i for i, t in enumerate(def_b["targets"])}

    def keyed(rows: Sequence[Row], index: int) -> dict[str, float]:
        return {
            str(r["case_key"]): float(r["score"])
            for r in rows
            if int(r["target_index"]) == index and r["status"] == "ok" and r.get("score") is not None
        }

    out = []
    for name, index_b in names_b.items():
        if name not in names_a:
            continue
        a, b = keyed(rows_a, names_a[name]), keyed(rows_b, index_b)
        common = sorted(set(a) & set(b))
        test = paired_test([a[k] for k in common], [b[k] for k in common], seed=seed)
        regression = bool(test.significant and test.diff is not None and test.diff < 0)
        out.append({"target": name, **test.as_dict(), "regression": regression})
    return out


def gate(
    summary: Mapping[str, Any],
    *,
    fail_under: float | None = None,
    comparison: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Why the run fails its quality gate (empty: it passes). Checked per target: each scorer's
    threshold on its mean, `fail_under` on the weighted score's mean, and no significant regression
    (p < 0.05, paired) against a compared run."""
    failures = []
    for target in summary["targets"]:
        name = target["name"]
        if target["score"]["mean"] is None:
            failures.append(f"{name}: no case was scored ({target['errors']} errors)")
            continue
        for scorer, agg in target["scorers"].items():
            if agg["threshold"] is not None and not agg["passed"]:
                mean = "none" if agg["mean"] is None else f"{agg['mean']:.3f}"
                failures.append(f"{name}: {scorer} mean {mean} is under its threshold {agg['threshold']}")
        if fail_under is not None and target["score"]["mean"] < fail_under:
            failures.append(f"{name}: score {target['score']['mean']:.3f} is under --fail-under {fail_under}")
    for row in comparison or []:
        if row.get("regression"):
            failures.append(
                f"{row['target']}: significant regression against the compared run "
                f"({row['diff']:+.3f}, p={row['p_value']:.3g} < {ALPHA}, {row['test']}, n={row['n']})"
            )
    return failures


def pairwise_summary(
    verdicts: Sequence[Mapping[str, Any]], pair: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    """A judge's pairwise verdicts (1: a wins, 0: b wins, 0.5: a tie, None: undecided) summed up: a's
    win rate (ties count half) with its bootstrap interval, and the exact sign test on the decisive
    cases (ties left out): is one target preferred more often than chance?"""
    values = [float(v["value"]) for v in verdicts if v.get("value") is not None]
    a_wins, b_wins = sum(1 for v in values if v == 1.0), sum(1 for v in values if v == 0.0)
    p = mcnemar_exact(a_wins, b_wins)
    return {
        "a": pair["a"],
        "b": pair["b"],
        "judge": (pair.get("config") or {}).get("model"),
        "cases": len(verdicts),
        "a_wins": a_wins,
        "b_wins": b_wins,
        "ties": sum(1 for v in values if v == 0.5),
        "undecided": len(verdicts) - len(values),
        "a_win_rate": _mean(values),
        "ci": bootstrap_ci(values, seed=seed),
        "test": "sign-exact",
        "p_value": p,
        "significant": p < ALPHA,
        "verdicts": list(verdicts),
    }
