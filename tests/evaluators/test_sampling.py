"""Sampling by trace-id hash: the same answer everywhere, the asked-for share, nested across rates."""

from __future__ import annotations

import random

from fmops.evaluators.sampling import sample_point, sampled

_rng = random.Random(7)
IDS = [f"{_rng.getrandbits(128):032x}" for _ in range(20_000)]  # as OpenTelemetry makes them


def test_every_replica_decides_the_same() -> None:
    assert [sampled(t, 0.3) for t in IDS[:500]] == [sampled(t, 0.3) for t in IDS[:500]]


def test_the_sampled_share_matches_the_rate() -> None:
    for rate in (0.01, 0.1, 0.5, 0.9):
        share = sum(sampled(t, rate) for t in IDS) / len(IDS)
        # Binomial standard deviation at n=20,000 is at most 0.0035: five of them.
        assert abs(share - rate) < 0.018, (rate, share)


def test_a_rate_of_one_takes_everything() -> None:
    assert all(sampled(t, 1.0) for t in IDS[:1000])
    assert sampled("", 1.0)


def test_smaller_rates_sample_subsets_of_larger_ones() -> None:
    small = {t for t in IDS if sampled(t, 0.05)}
    large = {t for t in IDS if sampled(t, 0.2)}
    assert small < large


def test_ids_that_are_not_random_are_spread_too() -> None:
    sequential = [f"{i:032x}" for i in range(10_000)]
    share = sum(sampled(t, 0.25) for t in sequential) / len(sequential)
    assert abs(share - 0.25) < 0.03
    assert all(0 <= sample_point(t) < 1 for t in sequential)
