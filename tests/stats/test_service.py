"""Dashboard numbers on both backends, checked against spans and scores with known values."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from fmops.errors import UserError
from fmops.stats import Bucket, Dimension, Metrics, StatsFilters, StatsService
from fmops.store import Store, upgrade
from support.databases import postgres_database, sqlite_url
from support.stats_data import T0, child, insert_rows, score, span

PROJECT = "p" * 32
OTHER = "o" * 32
HOUR = timedelta(hours=1)


@dataclass
class World:
    stats: StatsService
    roots: dict[str, dict[str, Any]]  # the requests, by a name the tests use


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One database per backend for the module: the tests only read it."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("stats"))
        with _world(url) as built:
            yield built
    else:
        with postgres_database() as url, _world(url) as built:
            yield built


class _world:
    def __init__(self, url: str) -> None:
        self.store = Store(url)

    def __enter__(self) -> World:
        upgrade(self.store)
        gpt = {"model": "gpt", "provider": "openai", "endpoint": "support", "prompt_name": "greet"}
        gpt |= {"prompt_version": 1, "variant": "a", "key_id": "k1", "user": "alice"}
        gpt |= {"input_tokens": 10, "output_tokens": 5, "cost": 0.01}
        claude = {"model": "claude", "provider": "anthropic", "prompt_name": "greet", "prompt_version": 2}
        claude |= {"user": "bob", "input_tokens": 20, "output_tokens": 10, "cost": 0.02}
        roots = {
            # Hour 0: four gpt requests, one failed.
            "a": span(PROJECT, T0 + timedelta(minutes=1), latency_ms=100.0, ttft_ms=10.0, **gpt),
            "b": span(PROJECT, T0 + timedelta(minutes=2), latency_ms=200.0, ttft_ms=20.0, **gpt),
            "c": span(PROJECT, T0 + timedelta(minutes=3), latency_ms=300.0, **gpt),
            "d": span(
                PROJECT, T0 + timedelta(minutes=4), latency_ms=400.0, ttft_ms=40.0, status="error", **gpt
            ),
            # Hour 1: two claude requests.
            "e": span(PROJECT, T0 + HOUR + timedelta(minutes=5), latency_ms=50.0, **claude),
            "f": span(PROJECT, T0 + HOUR + timedelta(minutes=6), latency_ms=150.0, **claude),
            # Hour 2: nothing. Hour 3: an application's own step, whose model call is a child span.
            "app": span(PROJECT, T0 + 3 * HOUR, latency_ms=1000.0, kind="chain"),
            # Not in the range, or not in the project.
            "before": span(PROJECT, T0 - timedelta(minutes=1), latency_ms=5.0, **gpt),
            "other": span(OTHER, T0 + timedelta(minutes=1), latency_ms=5.0, **gpt),
        }
        children = [
            # A failed, slow child: its tokens and cost count, its latency and status do not.
            child(
                roots["a"],
                model="gpt",
                input_tokens=3,
                output_tokens=2,
                cost=0.005,
                latency_ms=999.0,
                status="error",
            ),
            child(roots["app"], model="gpt", input_tokens=7, output_tokens=3, cost=0.03, latency_ms=900.0),
        ]
        scores = [
            score(roots["a"], "thumbs", 1, source="human"),
            score(roots["a"], "comment", None, source="api"),  # a second feedback on the same request
            score(roots["a"], "number", 0.8, source="evaluator", name="judge"),
            score(roots["b"], "thumbs", -1, source="human"),
            score(roots["b"], "number", 0.4, source="evaluator", name="judge"),
            score(roots["c"], "number", 0.6, source="evaluator", name="judge"),  # a score, not feedback
            score(roots["e"], "thumbs", 1, source="api"),
            score(roots["e"], "number", 1.0, source="evaluator", name="judge"),
            score(roots["e"], "number", 4.0, source="human", name="helpfulness"),
            score(roots["before"], "thumbs", -1, source="human"),
            score(roots["other"], "thumbs", -1, source="human"),
        ]
        insert_rows(self.store, [*roots.values(), *children], scores)
        return World(StatsService(self.store), roots)

    def __exit__(self, *_: object) -> None:
        self.store.dispose()


def window(hours: int = 4, **dimensions: Any) -> StatsFilters:
    return StatsFilters(start=T0, end=T0 + hours * HOUR, **dimensions)


def test_totals_over_the_range(world: World) -> None:
    total = world.stats.totals(PROJECT, window())
    assert (total.volume, total.errors) == (7, 1)
    assert total.error_rate == pytest.approx(1 / 7)
    # Tokens and cost: every span, children included (a, b, c, d: 10/5; e, f: 20/10; two children).
    assert (total.input_tokens, total.output_tokens) == (4 * 10 + 2 * 20 + 3 + 7, 4 * 5 + 2 * 10 + 2 + 3)
    assert total.cost == pytest.approx(4 * 0.01 + 2 * 0.02 + 0.005 + 0.03)
    latencies = [100.0, 200.0, 300.0, 400.0, 50.0, 150.0, 1000.0]  # roots only: not the children's 999, 900
    expected = statistics.quantiles(latencies, n=100, method="inclusive")
    assert total.latency_p50_ms == pytest.approx(200.0)
    assert total.latency_p95_ms == pytest.approx(expected[94])
    assert total.latency_p99_ms == pytest.approx(expected[98])
    assert total.ttft_p50_ms == pytest.approx(20.0)
    ttft = statistics.quantiles([10.0, 20.0, 40.0], n=100, method="inclusive")
    assert total.ttft_p95_ms == pytest.approx(ttft[94])
    # Feedback: a (thumbs up + comment), b (thumbs down), e (thumbs up, and a person's helpfulness).
    assert total.feedback_count == 3
    assert total.feedback_rate == pytest.approx(3 / 7)
    assert (total.thumbs_count, total.thumbs_up) == (3, 2)
    assert total.feedback_positive_share == pytest.approx(2 / 3)
    assert total.scores["judge"].mean == pytest.approx((0.8 + 0.4 + 0.6 + 1.0) / 4)
    assert total.scores["judge"].count == 4
    assert total.scores["helpfulness"].mean == pytest.approx(4.0)
    assert "thumbs" not in total.scores, "thumbs are the positive share, not a mean"


def test_hourly_series_has_every_bucket_in_order(world: World) -> None:
    series = world.stats.timeseries(PROJECT, window(), Bucket.hour)
    assert series.bucket == Bucket.hour
    assert [p.time for p in series.points] == [T0 + n * HOUR for n in range(4)]
    hour0, hour1, hour2, hour3 = (p.metrics for p in series.points)
    assert (hour0.volume, hour0.errors, hour0.error_rate) == (4, 1, 0.25)
    # percentile_cont of 100, 200, 300, 400: p50 halfway between 200 and 300, p95 at 2.85 of 3 steps.
    assert hour0.latency_p50_ms == pytest.approx(250.0)
    assert hour0.latency_p95_ms == pytest.approx(385.0)
    assert hour0.latency_p99_ms == pytest.approx(397.0)
    assert hour0.ttft_p50_ms == pytest.approx(20.0)
    assert hour0.cost == pytest.approx(4 * 0.01 + 0.005)
    assert (hour0.feedback_count, hour0.thumbs_count, hour0.thumbs_up) == (2, 2, 1)
    assert hour0.scores["judge"].mean == pytest.approx(0.6)
    assert (hour1.volume, hour1.errors, hour1.latency_p50_ms) == (2, 0, pytest.approx(100.0))
    assert hour1.ttft_p50_ms is None, "no streamed call, no TTFT"
    assert hour1.feedback_positive_share == 1.0
    assert hour2 == Metrics(), "an empty bucket is zeros and nulls"
    assert hour2.error_rate is None
    assert hour2.feedback_rate is None
    assert (hour3.volume, hour3.latency_p50_ms, hour3.cost) == (1, pytest.approx(1000.0), pytest.approx(0.03))
    # The buckets add up to the range's total.
    assert sum(p.metrics.volume for p in series.points) == series.total.volume == 7


def test_minute_buckets_and_partial_edges(world: World) -> None:
    filters = StatsFilters(start=T0 + timedelta(seconds=90), end=T0 + timedelta(minutes=4, seconds=30))
    series = world.stats.timeseries(PROJECT, filters, Bucket.minute)
    # The range touches minutes 1 to 4; minute 1's request (at 1:00) is before the start.
    assert [p.time for p in series.points] == [T0 + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert [p.metrics.volume for p in series.points] == [0, 1, 1, 1]


def test_day_buckets_are_utc_days(world: World) -> None:
    filters = StatsFilters(start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))
    series = world.stats.timeseries(PROJECT, filters, Bucket.day)
    assert [p.time for p in series.points] == [T0 - timedelta(days=1), T0]
    assert [p.metrics.volume for p in series.points] == [1, 7]  # "before" is the day before T0


@pytest.mark.parametrize(
    ("length", "bucket"),
    [
        (timedelta(hours=2), Bucket.minute),
        (timedelta(hours=24), Bucket.hour),
        (timedelta(days=30), Bucket.day),
    ],
)
def test_automatic_bucket_follows_the_range(world: World, length: timedelta, bucket: Bucket) -> None:
    filters = StatsFilters(start=T0, end=T0 + length)
    series = world.stats.timeseries(PROJECT, filters)
    assert series.bucket == bucket
    assert sum(p.metrics.volume for p in series.points) == world.stats.totals(PROJECT, filters).volume > 0


def test_breakdown_by_model(world: World) -> None:
    result = world.stats.breakdown(PROJECT, window(), Dimension.model)
    rows = {r.group["model"]: r.metrics for r in result.rows}
    assert [r.group for r in result.rows] == [{"model": "gpt"}, {"model": "claude"}, {"model": None}]
    assert (rows["gpt"].volume, rows["gpt"].errors, rows["gpt"].latency_p50_ms) == (
        4,
        1,
        pytest.approx(250.0),
    )
    # gpt's cost includes both gpt child spans, the one under the application's step too.
    assert rows["gpt"].cost == pytest.approx(4 * 0.01 + 0.005 + 0.03)
    assert (rows["claude"].volume, rows["claude"].feedback_count, rows["claude"].thumbs_up) == (2, 1, 1)
    assert rows["claude"].scores["helpfulness"].count == 1
    assert (rows[None].volume, rows[None].cost) == (1, 0.0)
    assert result.groups == 3
    assert result.total.volume == 7


@pytest.mark.parametrize(
    ("by", "groups"),
    [
        (Dimension.prompt, {("greet", 1): 4, ("greet", 2): 2, (None, None): 1}),
        (Dimension.user, {("alice",): 4, ("bob",): 2, (None,): 1}),
        (Dimension.endpoint, {("support",): 4, (None,): 3}),
        (Dimension.provider, {("openai",): 4, ("anthropic",): 2, (None,): 1}),
        (Dimension.key, {("k1",): 4, (None,): 3}),
        (Dimension.variant, {("a",): 4, (None,): 3}),
    ],
)
def test_breakdown_by_each_dimension(world: World, by: Dimension, groups: dict[tuple[Any, ...], int]) -> None:
    result = world.stats.breakdown(PROJECT, window(), by)
    assert {tuple(r.group.values()): r.metrics.volume for r in result.rows} == groups


def test_breakdown_limit_keeps_the_busiest(world: World) -> None:
    result = world.stats.breakdown(PROJECT, window(), Dimension.model, limit=1)
    assert [r.group for r in result.rows] == [{"model": "gpt"}]
    assert (result.groups, result.total.volume) == (3, 7), "the total still covers every group"


@pytest.mark.parametrize(
    ("dimensions", "volume"),
    [
        ({"model": "claude"}, 2),
        ({"endpoint": "support"}, 4),
        ({"prompt_name": "greet", "prompt_version": 2}, 2),
        ({"user": "alice", "model": "claude"}, 0),
        ({"variant": "a"}, 4),
        ({"key_id": "k1"}, 4),
        ({"provider": "anthropic"}, 2),
    ],
)
def test_filters(world: World, dimensions: dict[str, Any], volume: int) -> None:
    assert world.stats.totals(PROJECT, window(**dimensions)).volume == volume


def test_projects_are_separate_and_the_operator_sees_all(world: World) -> None:
    assert world.stats.totals(OTHER, window()).volume == 1
    everything = world.stats.totals(None, window())
    assert everything.volume == 8
    assert everything.thumbs_count == 4


def test_an_empty_range_is_zeros_not_an_error(world: World) -> None:
    filters = StatsFilters(start=T0 + timedelta(days=3), end=T0 + timedelta(days=4))
    assert world.stats.totals(PROJECT, filters) == Metrics()
    series = world.stats.timeseries(PROJECT, filters)
    assert len(series.points) == 24
    assert all(p.metrics == Metrics() for p in series.points)
    assert world.stats.breakdown(PROJECT, filters, Dimension.model).rows == []


@pytest.mark.parametrize(
    ("make", "param", "words"),
    [
        (lambda: StatsFilters(start=T0, end=T0), "start", "must be before end"),
        (lambda: StatsFilters(start=T0, end=T0 - HOUR), "start", "must be before end"),
        (lambda: StatsFilters(start=T0 - timedelta(days=500), end=T0), "start", "400 days"),
    ],
)
def test_bad_ranges_are_refused(make: Any, param: str, words: str) -> None:
    with pytest.raises(UserError, match=words) as caught:
        make()
    assert caught.value.param == param


def test_too_many_buckets_or_rows_are_refused(world: World) -> None:
    with pytest.raises(UserError, match="coarser bucket") as caught:
        world.stats.timeseries(PROJECT, StatsFilters(start=T0, end=T0 + timedelta(days=30)), Bucket.minute)
    assert caught.value.param == "bucket"
    with pytest.raises(UserError, match="limit"):
        world.stats.breakdown(PROJECT, window(), Dimension.model, limit=0)


def test_percentiles_match_the_standard_library_on_many_values(store: Store) -> None:
    """Interpolated like percentile_cont: the same as `statistics.quantiles(method="inclusive")`."""
    rng = random.Random(4)
    latencies = [rng.lognormvariate(5, 1) for _ in range(501)]
    insert_rows(
        store, [span(PROJECT, T0 + timedelta(seconds=i), latency_ms=v) for i, v in enumerate(latencies)]
    )
    total = StatsService(store).totals(PROJECT, window())
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    assert (total.latency_p50_ms, total.latency_p95_ms, total.latency_p99_ms) == pytest.approx(
        (statistics.median(latencies), cuts[94], cuts[98]), rel=1e-12
    )
