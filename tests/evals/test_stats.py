"""The statistics against values worked out by hand (or by the closed form)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fmops.evals.stats import bootstrap_ci, mcnemar_exact, paired_test, wilcoxon
from fmops.evals.summary import compare_runs, gate, summarize


def test_the_bootstrap_interval_matches_the_normal_approximation_and_is_seeded() -> None:
    values = [0.0, 1.0] * 100  # mean 0.5, standard error 0.5 / sqrt(200) = 0.0354
    low, high = bootstrap_ci(values, seed=3)
    half = 1.96 * 0.5 / math.sqrt(200)
    assert low == pytest.approx(0.5 - half, abs=0.012)
    assert high == pytest.approx(0.5 + half, abs=0.012)
    assert bootstrap_ci(values, seed=3) == (low, high)
    assert bootstrap_ci([], seed=0) is None
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)


def test_few_distinct_values_are_resampled_as_counts_with_the_same_interval() -> None:
    # Three levels take the multinomial path; the same values with a tiny jitter (all distinct) take
    # the index path. Both estimate one distribution: their intervals agree within resampling noise.
    levels = [0.0, 0.5, 1.0] * 60 + [1.0] * 20
    jittered = [v + i * 1e-9 for i, v in enumerate(levels)]
    counted, indexed = bootstrap_ci(levels, seed=1), bootstrap_ci(jittered, seed=1)
    assert counted is not None
    assert indexed is not None
    assert counted == pytest.approx(indexed, abs=0.01)
    assert counted[0] < sum(levels) / len(levels) < counted[1]


def test_pass_fail_scores_get_the_exact_mcnemar_test() -> None:
    # 8 cases only b gets right, 1 only a gets right, 11 both: p = 2 * P(X >= 8 | n=9, 1/2) = 20/512
    a = [0] * 8 + [1] + [1] * 11
    b = [1] * 8 + [0] + [1] * 11
    test = paired_test(a, b)
    assert test.test == "mcnemar-exact"
    assert (test.b_better, test.a_better, test.n) == (8, 1, 20)
    assert test.p_value == pytest.approx(20 / 512)
    assert test.significant
    assert test.diff == pytest.approx(7 / 20)


def test_graded_scores_get_the_wilcoxon_signed_rank_test() -> None:
    a = [0.5] * 10
    b = [0.5 + d / 100 for d in range(1, 11)]  # ten positive, distinct differences: p = 2 / 2**10
    test = paired_test(a, b)
    assert test.test == "wilcoxon"
    assert test.p_value == pytest.approx(2 / 1024)
    low, high = test.ci
    assert 0 < low < test.diff < high


def test_identical_sides_and_empty_sides_are_not_significant() -> None:
    same = paired_test([1, 0, 1], [1, 0, 1])
    assert (same.test, same.p_value, same.significant) == ("none", 1.0, False)
    assert paired_test([], []).n == 0


def _row(case: int, target: int, score: float | None, status: str = "ok") -> dict[str, object]:
    return {
        "case_index": case,
        "target_index": target,
        "case_key": f"k{case}",
        "status": status,
        "score": score,
        "scores": {"exact": {"value": score}},
        "latency_ms": 100.0 + case,
        "cost": 0.01,
        "cached": False,
    }


DEFINITION = {
    "seed": 0,
    "targets": [{"name": "a"}, {"name": "b", "endpoint": "e"}],
    "scorers": [{"name": "exact", "weight": 1.0, "threshold": 0.8}],
}


def test_summary_gate_and_regression_against_a_compared_run() -> None:
    before = [_row(i, 0, 1.0) for i in range(20)] + [_row(i, 1, 1.0) for i in range(20)]
    after = [_row(i, 0, 1.0 if i < 8 else 0.0) for i in range(20)] + [_row(i, 1, 1.0) for i in range(19)]
    after.append(_row(19, 1, None, "error"))
    summary = summarize(after, DEFINITION)
    a, b = summary["targets"]
    assert a["score"]["mean"] == pytest.approx(0.4)
    assert a["scorers"]["exact"]["passed"] is False
    assert b["errors"] == 1
    assert b["error_rate"] == pytest.approx(0.05)
    assert b["score"]["mean"] == 1.0
    assert b["kind"] == "endpoint"
    assert a["cost"]["total"] == pytest.approx(0.2)
    assert summary["comparisons"][0]["test"] == "mcnemar-exact"
    compared = compare_runs(before, DEFINITION, after, DEFINITION)
    assert [c["regression"] for c in compared] == [True, False]
    failures = gate(summary, fail_under=0.5, comparison=compared)
    assert any("a: exact mean 0.400 is under its threshold 0.8" in f for f in failures)
    assert any("under --fail-under 0.5" in f for f in failures)
    assert any("significant regression" in f for f in failures)
    assert not any(f.startswith("b:") for f in failures)
    assert gate(summarize(before, DEFINITION)) == []


def test_the_tests_agree_with_scipy() -> None:
    rng = np.random.default_rng(7)
    for trial in range(45):
        if trial % 3 == 0:  # no ties: exact up to 50
            n = int(rng.integers(2, 50))
            x, y = rng.random(n), rng.random(n)
        elif trial % 3 == 1:  # ties and zeros, few cases: scipy enumerates the signs too
            n = int(rng.integers(2, 14))
            x, y = rng.integers(0, 3, n) / 2, rng.integers(0, 3, n) / 2
        else:  # many cases with ties: the normal approximation with the tie correction
            n = int(rng.integers(51, 150))
            x, y = np.round(rng.random(n), 1), np.round(rng.random(n), 1) + 0.05
        if np.all(x == y):
            continue
        expected = stats.wilcoxon(x, y, zero_method="wilcox").pvalue
        assert wilcoxon(y - x) == pytest.approx(expected, abs=1e-9)
    for b in range(25):
        for c in range(25):
            if b + c:
                assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, abs=1e-12)
