"""The statistics of an eval: bootstrap confidence intervals and paired significance tests.

Every interval is a percentile bootstrap of the mean (numpy, seeded by the suite's seed, so the
same results give the same interval). Comparisons are *paired*: the two sides answered the same
cases, so each case is its own control and the test looks at per-case differences.

Which test, and why (`paired_test`):

- Scores that are all 0 or 1 (pass/fail scorers such as exact match or regex): the **exact
  McNemar test**. With paired binary outcomes only the discordant cases carry information
  (A right and B wrong, or the reverse); under "no difference" each discordant case goes either way
  with probability 1/2, so the count is Binomial(b + c, 1/2), tested exactly (two-sided).
  A signed-rank test would be mostly ties here, and a t-test assumes a distribution binary data lack.
- Graded scores (ROUGE, similarity, a judge's 1-5 mapped to 0..1, weighted mixes of scorers): the
  **Wilcoxon signed-rank test** on the per-case differences. It assumes neither normality nor equal
  variances, only a symmetric difference distribution, and is robust to the skewed, bounded scores
  evals produce. Zero differences are dropped ("wilcox"); up to 50 non-zero differences without
  ties the p-value is exact (the signed-rank distribution by counting), otherwise the normal
  approximation with the tie correction.

Both are computed here with numpy and the standard library, and checked against
`scipy.stats.binomtest` and `scipy.stats.wilcoxon` in the tests: importing scipy.stats costs
~80 MB and half a second of CPU, more than an eval run of a few hundred cases spends on anything else.

Either way the result also carries the mean difference with a paired bootstrap interval (the cases
resampled together), which says how large the difference is, not only whether it is there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# numpy is imported inside the functions: every `fmops eval run` imports this module at start-up but
# needs numpy only for the summary, and the runner loads it on a spare thread while the first calls
# wait on the network (about 50 ms of a CI gate's start-up, on this project's 2-core machine).

RESAMPLES = 2000
BOOTSTRAP_BLOCK = 2**17
FEW_LEVELS = 16  # distinct values up to which a resample is drawn as counts (bootstrap_ci)
LEVEL = 0.95
ALPHA = 0.05


def bootstrap_ci(
    values: Any, *, seed: int = 0, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean; None for no values. One value: (v, v)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(data, return_counts=True)
    if levels.size <= FEW_LEVELS:
        # A resample's mean depends only on how often each distinct value was drawn: a multinomial
        # draw of n over their frequencies has exactly the distribution of n drawn indices, at the cost
        # of `levels` numbers per resample instead of n (pass/fail scores have two levels).
        draws = rng.multinomial(data.size, counts / data.size, size=resamples)
        means = draws @ levels / data.size
        return _percentiles(means, level)
    # Resampled in blocks of about 128k draws (1 MB of indices) rather than one resamples x n matrix
    # (6 MB at 200 cases, with its gather): the generator yields the same stream either way, so the
    # means are the same.
    block = max(1, BOOTSTRAP_BLOCK // data.size)
    means = np.empty(resamples)
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        means[start : start + rows] = data[rng.integers(0, data.size, size=(rows, data.size))].mean(axis=1)
    return _percentiles(means, level)


def _percentiles(means: Any, level: float) -> tuple[float, float]:
    import numpy as np

    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def is_binary(values: Any) -> bool:
    import numpy as np

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
    import numpy as np

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
    if is_binary(x) and is_binary(y):
        p, test = mcnemar_exact(b_better, a_better), "mcnemar-exact"
    else:
        p, test = wilcoxon(diff), "wilcoxon"
    return PairedTest(test, n, mean_a, mean_b, mean_diff, ci, p, p < alpha, a_better, b_better)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact test of b successes in b + c trials at probability 1/2 (as
    `scipy.stats.binomtest(b, b + c, 0.5)`): the distribution is symmetric, so twice the smaller tail."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def average_ranks(values: Any) -> Any:
    """Ranks from 1, ties sharing their average rank (as `scipy.stats.rankdata`)."""
    import numpy as np

    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


EXACT_UP_TO = 50


def wilcoxon(differences: Any) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, zeros dropped (`zero_method=
    "wilcox"`). Up to 50 non-zero differences it is exact: the null distribution of R+ over every
    assignment of signs to the (average, when tied) ranks, counted; beyond, the normal
    approximation with the tie correction. (`scipy.stats.wilcoxon` gives the same where it is
    exact too: no ties, or at most 13 differences; with ties between 14 and 50 it approximates.)"""
    import numpy as np

    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return 1.0
    magnitude = np.abs(d)
    ranks = average_ranks(magnitude)
    r_plus = float(ranks[d > 0].sum())
    if n <= EXACT_UP_TO:
        # Doubled ranks are whole numbers (a tie's average is k/2): count the sign assignments
        # reaching each doubled sum of the positive ranks.
        doubled = np.rint(ranks * 2).astype(int)
        ways = np.zeros(int(doubled.sum()) + 1)
        ways[0] = 1.0
        for step in doubled:
            ways[step:] = ways[step:] + ways[:-step].copy()
        r = round(r_plus * 2)
        total = 2.0**n
        low, high = ways[: r + 1].sum() / total, ways[r:].sum() / total
        return float(min(1.0, 2 * min(low, high)))
    _, counts = np.unique(magnitude, return_counts=True)
    ties = counts[counts > 1].astype(float)
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((ties**3 - ties).sum()) / 48
    if variance <= 0:
        return 1.0
    z = (r_plus - mean) / math.sqrt(variance)
    return float(math.erfc(abs(z) / math.sqrt(2)))


def percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None
