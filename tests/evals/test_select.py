"""Model selection: candidates answer the same requests; the cheapest one near the best is recommended."""

from __future__ import annotations

import pytest

from fmops.evals.select import candidate_suite, rank
from fmops.evals.suite import SuiteError


def _target(name: str, mean: float, ci: tuple[float, float], cost: float, p50: float) -> dict[str, object]:
    return {
        "name": name,
        "score": {"mean": mean, "ci": ci},
        "errors": 0,
        "latency_ms": {"p50": p50},
        "cost": {"per_case": cost},
    }


def test_the_cheapest_candidate_within_the_best_interval_and_not_significantly_worse_wins() -> None:
    summary = {
        "targets": [
            _target("big", 0.90, (0.85, 0.95), 0.010, 900),
            _target("small", 0.87, (0.81, 0.92), 0.001, 200),
            _target("tiny", 0.60, (0.52, 0.68), 0.0001, 90),
        ]
    }
    comparisons = [
        {"a": "big", "b": "small", "diff": -0.03, "significant": False},
        {"a": "big", "b": "tiny", "diff": -0.30, "significant": True},
        {"a": "small", "b": "tiny", "diff": -0.27, "significant": True},
    ]
    ranked = rank(summary, comparisons, {"big": "apache-2.0"})
    assert [r["model"] for r in ranked["ranking"]] == ["big", "small", "tiny"]
    assert ranked["recommended"] == "small"
    assert "cheapest within the best's 95% interval" in ranked["reason"]
    assert [r["within_best_ci"] for r in ranked["ranking"]] == [True, True, False]
    assert ranked["ranking"][0]["license"] == "apache-2.0"
    # significantly worse, though inside the interval: not recommended
    comparisons[0]["significant"] = True
    assert rank(summary, comparisons, {})["recommended"] == "big"


def test_candidates_replace_the_targets_keeping_the_first_targets_prompt_and_parameters() -> None:
    suite = {
        "name": "s",
        "cases": [{"input": "x"}],
        "scorers": ["json"],
        "targets": [{"prompt": "p@production", "model": "old", "parameters": {"temperature": 0}}],
    }
    made = candidate_suite(suite, ["a", "b"])
    assert made["targets"] == [
        {"prompt": "p@production", "parameters": {"temperature": 0}, "model": "a", "name": "a"},
        {"prompt": "p@production", "parameters": {"temperature": 0}, "model": "b", "name": "b"},
    ]
    with pytest.raises(SuiteError, match="at least two distinct"):
        candidate_suite(suite, ["a"])


def test_select_runs_the_candidates_through_the_gateway(world) -> None:
    suite = {
        "name": "pick",
        "cases": [{"input": f"c{i}", "expected": "x"} for i in range(6)],
        "targets": [{"model": "mock-a"}],
        "scorers": [{"name": "regex", "config": {"pattern": "^Hello"}}],
    }
    run = world.run(candidate_suite(suite, ["mock-a", "mock-b"]))
    ranked = rank(world.evals.summary(world.project, run.id), world.evals.compare(world.project, run.id), {})
    assert {r["model"] for r in ranked["ranking"]} == {"mock-a", "mock-b"}
    assert ranked["recommended"] == "mock-b"  # as good, and unpriced where mock-a costs
