"""Intervals and tests against published values (R, statistical tables) and a numerical integral."""

from __future__ import annotations

import math

import pytest

from fmops.stats.inference import (
    holm,
    mean_interval,
    n_for_means,
    n_for_proportions,
    regularized_beta,
    t_quantile,
    t_two_sided_p,
    two_proportion_p,
    welch_p,
    wilson,
)


def t_tail_by_simpson(t: float, df: float, steps: int = 20_000, upper: float = 2_000.0) -> float:
    """P(|T| >= t) by integrating the t density: an independent check of the beta-function route."""

    def density(x: float) -> float:
        log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    # Substitute x = t + u**2 to tame the long tail, then Simpson's rule over u.
    top = math.sqrt(upper - t)
    h = top / steps
    total = 0.0
    for i in range(steps + 1):
        u = i * h
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * density(t + u * u) * 2 * u
    return 2 * total * h / 3


@pytest.mark.parametrize(
    ("probability", "df", "table"),
    [(0.975, 1, 12.7062), (0.975, 9, 2.2622), (0.975, 30, 2.0423), (0.995, 5, 4.0321), (0.975, 1e6, 1.9600)],
)
def test_t_quantiles_match_the_table(probability: float, df: float, table: float) -> None:
    assert t_quantile(probability, df) == pytest.approx(table, abs=1e-4)


@pytest.mark.parametrize(("t", "df"), [(0.5, 2), (2.0, 3), (4.0415, 4.9592), (1.3, 40.5)])
def test_t_tails_match_a_numerical_integral(t: float, df: float) -> None:
    assert t_two_sided_p(t, df) == pytest.approx(t_tail_by_simpson(t, df), rel=1e-5)


def test_incomplete_beta_matches_closed_forms() -> None:
    # I_x(1, 1) = x; I_x(2, 3) = 1 - (1-x)^3 (1 + 3x) for the Beta(2, 3) CDF.
    assert regularized_beta(1, 1, 0.3) == pytest.approx(0.3)
    assert regularized_beta(2, 3, 0.4) == pytest.approx(1 - 0.6**3 * (1 + 3 * 0.4))
    assert regularized_beta(2, 3, 0.0) == 0.0
    assert regularized_beta(2, 3, 1.0) == 1.0


def test_wilson_interval() -> None:
    # 8 of 10: Wilson (0.4902, 0.9433), as R's prop.test(8, 10, correct=FALSE)$conf.int.
    interval = wilson(8, 10)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    zero = wilson(0, 20)  # unlike p ± z·se, never an empty or negative interval at 0
    assert zero is not None
    assert (zero.low, zero.high) == (0.0, pytest.approx(0.1611, abs=1e-4))
    assert wilson(0, 0) is None


def test_mean_interval() -> None:
    # 100, 200, 300: mean 200, s = 100, t(0.975, 2) = 4.3027 -> 200 ± 248.41.
    interval = mean_interval(200.0, 100.0**2, 3)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((200 - 248.414, 200 + 248.414), abs=1e-2)
    assert mean_interval(5.0, 0.0, 1) is None


def test_two_proportion_z_test() -> None:
    # 30/100 vs 50/100: z = 2.8868, p = 0.003892 (R: prop.test(c(30, 50), c(100, 100), correct=FALSE)).
    assert two_proportion_p(30, 100, 50, 100) == pytest.approx(0.003892, abs=1e-6)
    assert two_proportion_p(0, 50, 0, 50) == 1.0
    assert two_proportion_p(1, 0, 1, 1) is None


def test_welch_t_test() -> None:
    # t.test(c(100, 200, 300), c(400, 500, 600, 700)): t = -4.0415, df = 4.9592, p = 0.01008.
    p = welch_p(200.0, 10_000.0, 3, 550.0, 50_000.0 / 3, 4)
    assert p == pytest.approx(0.010077, abs=1e-6)
    assert welch_p(1.0, 0.0, 5, 2.0, 0.0, 5) == 0.0  # two constants that differ
    assert welch_p(1.0, 0.0, 5, 1.0, 0.0, 5) == 1.0
    assert welch_p(1.0, 1.0, 1, 2.0, 1.0, 5) is None


def test_holm_correction() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.5 -> 4·0.01, 3·0.03, max(2·0.04, 0.09), 0.5, back in input order.
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


def test_sample_sizes() -> None:
    # 50% vs 55% at alpha 0.05, power 0.8: 1565 per group (G*Power and pwr agree within one).
    assert n_for_proportions(0.5, 0.55) == 1565
    assert n_for_means(0.2) == 393  # d = 0.2: 2 (1.96 + 0.84)^2 / 0.04
    with pytest.raises(ValueError):
        n_for_proportions(0.3, 0.3)
