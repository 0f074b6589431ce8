"""Confidence intervals, significance tests and sample sizes, in plain `math` (no scipy).

Used to compare groups of calls (an endpoint's A/B variants): rates get Wilson intervals and a
two-proportion z-test, means get Student-t intervals and Welch's t-test, and many comparisons at
once are corrected with Holm's method so that testing every metric of every variant does not
manufacture a winner.

Student's t distribution is computed from the regularised incomplete beta function (a continued
fraction, evaluated with the modified Lentz method), which is exact to ~1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

_NORMAL = NormalDist()
_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


# --- distributions ---------------------------------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < _EPS:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the CDF of the Beta(a, b) distribution at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The fraction converges fast only on one side of the mean; use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=256)
def t_quantile(probability: float, df: float) -> float:
    """The `probability` quantile (> 0.5) of Student's t, found by bisection on the tail."""
    tail = 2.0 * (1.0 - probability)
    high = 1.0
    while t_two_sided_p(high, df) > tail:
        high *= 2.0
    low = 0.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2.0


def z_quantile(probability: float) -> float:
    return _NORMAL.inv_cdf(probability)


def z_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


# --- intervals -------------------------------------------------------------------------------


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval | None:
    """The Wilson score interval of a proportion: sound near 0 and 1, unlike p ± z·se."""
    if n <= 0:
        return None
    z = z_quantile(0.5 + confidence / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes the bound is exactly 0 or 1; rounding would leave a speck.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def mean_interval(mean: float, variance: float, n: int, confidence: float = 0.95) -> Interval | None:
    """mean ± t·s/√n: a Student-t interval of a mean (None below two values)."""
    if n < 2:
        return None
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * math.sqrt(max(variance, 0.0) / n)
    return Interval(mean - half, mean + half)


# --- tests -----------------------------------------------------------------------------------


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test (None when a group is empty)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:  # all successes or all failures on both sides: nothing differs
        return 1.0
    return z_two_sided_p((x2 / n2 - x1 / n1) / se)


def welch_p(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances); None below two values a side."""
    if n1 < 2 or n2 < 2:
        return None
    a, b = max(var1, 0.0) / n1, max(var2, 0.0) / n2
    if a + b == 0.0:  # both constant: a difference is certain, equality is certain
        return 0.0 if mean1 != mean2 else 1.0
    t = (mean2 - mean1) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    return t_two_sided_p(t, df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (controls the family-wise error)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# --- sample sizes ----------------------------------------------------------------------------


def n_for_proportions(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per group for a two-sided z-test to tell p1 from p2 (Fleiss, no continuity term)."""
    delta = abs(p2 - p1)
    if delta == 0.0:
        raise ValueError("p1 and p2 must differ")
    z_a, z_b = z_quantile(1.0 - alpha / 2.0), z_quantile(power)
    pooled = (p1 + p2) / 2.0
    root = z_a * math.sqrt(2.0 * pooled * (1.0 - pooled)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (delta * delta))


def n_for_means(effect_size: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per group to detect a difference of `effect_size` standard deviations."""
    z_a, z_b = z_quantile(1.0 - alpha / 2.0), z_quantile(power)
    return math.ceil(2.0 * (z_a + z_b) ** 2 / (effect_size * effect_size))


__all__ = [
    "Interval",
    "holm",
    "mean_interval",
    "n_for_means",
    "n_for_proportions",
    "regularized_beta",
    "t_quantile",
    "t_two_sided_p",
    "two_proportion_p",
    "welch_p",
    "wilson",
    "z_quantile",
    "z_two_sided_p",
]
