"""The statistics of an eval: bootstrap confidence intervals and paired significance tests.

Every interval is a percentile bootstrap of the mean (numpy, seeded by the suite's seed, so the
same results give the same interval). Comparisons are *paired*: the two sides answered the same
cases, so each case is its own control and the test looks at per-case differences.

Which test, and why (`paired_test`):

- Scores that are all 0 or 1 (pass/fail scorers such as exact match or regex): the **exact
  McNemar test**. With paired binary outcomes only the discordant cases carry information
  (A right and B wrong, or the reverse); under "no difference" each discordant case goes either way
  with probability 1/2, so the count is Binomial(b + c, 1/2), tested exactly (`scipy.stats.binomtest`).
  A signed-rank test would be mostly ties here, and a t-test assumes a distribution binary data lack.
- Graded scores (ROUGE, similarity, a judge's 1-5 mapped to 0..1, weighted mixes of scorers): the
  **Wilcoxon signed-rank test** on the per-case differences (`scipy.stats.wilcoxon`). It assumes
  neither normality nor equal variances, only a symmetric difference distribution, and is robust to
  the skewed, bounded scores evals produce. Zero differences are dropped ("wilcox"), so identical
  answers neither help nor hurt.

Either way the result also carries the mean difference with a paired bootstrap interval (the cases
resampled together), which says how large the difference is, not only whether it is there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
ALPHA = 0.05


def bootstrap_ci(
    values: Any, *, seed: int = 0, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean; None for no values. One value: (v, v)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def is_binary(values: Any) -> bool:
    data = np.asarray(values, dtype=float)
    return bool(data.size) and bool(np.all((data == 0) | (data == 1)))


@dataclass(frozen=True)
class PairedTest:
    test: str  # "mcnemar-exact" | "wilcoxon" | "none" (no pairs, or every pair equal)
    n: int  # pairs compared
    mean_a: float | None
    mean_b: float | None
    diff: float | None  # mean of b - a
    ci: tuple[float, float] | None  # paired bootstrap interval of the difference
    p_value: float | None
    significant: bool
    a_better: int = 0  # cases where a scored higher
    b_better: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(a: Any, b: Any, *, seed: int = 0, alpha: float = ALPHA) -> PairedTest:
    """Is b different from a on the same cases? (See the module docstring for the choice of test.)"""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired samples must have the same length")
    n = int(x.size)
    if n == 0:
        return PairedTest("none", 0, None, None, None, None, None, False)
    diff = y - x
    a_better, b_better = int(np.sum(diff < 0)), int(np.sum(diff > 0))
    mean_diff = float(diff.mean())
    ci = bootstrap_ci(diff, seed=seed)
    mean_a, mean_b = float(x.mean()), float(y.mean())
    if a_better + b_better == 0:
        return PairedTest("none", n, mean_a, mean_b, mean_diff, ci, 1.0, False)
    from scipy import stats as sps  # loaded by the first comparison, not by every import of evals

    if is_binary(x) and is_binary(y):
        p = float(sps.binomtest(b_better, a_better + b_better, 0.5).pvalue)
        test = "mcnemar-exact"
    else:
        p = float(sps.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
        test = "wilcoxon"
    if math.isnan(p):
        p = 1.0
    return PairedTest(test, n, mean_a, mean_b, mean_diff, ci, p, p < alpha, a_better, b_better)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None
