"""Hourly stats roll-ups on both backends: marking on write, the loop, late spans, retention, and the
long-range reads, which must match the exact pass over the spans (percentiles within 1%)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from fmops.platform import Platform
from fmops.stats import Bucket, Dimension, Metrics, StatsFilters, StatsService
from fmops.stats.aggregate import Aggregator
from fmops.stats.buckets import bucket_expression
from fmops.stats.filters import DIMENSION_COLUMNS
from fmops.stats.rollup import (
    HOUR_SECONDS,
    USER_DAY,
    Histogram,
    RollupLoop,
    backfill,
    hour_of,
    hour_start,
    mark_dirty,
    roll_up_all,
    roll_up_due,
    roll_up_hour,
)
from fmops.store import Store, utcnow
from fmops.store.models import Project, Score, StatsRollup, StatsRollupFacet, StatsRollupHour
from fmops.tracing.retention import enforce
from fmops.tracing.writer import TraceWriter
from support.stats_data import T0, child, insert_rows, score, span

PROJECT = "p" * 32
OTHER = "o" * 32
HOUR = timedelta(hours=1)
H0 = hour_of(T0)
D0 = H0 // 24  # T0's day


def marks(store: Store) -> dict[tuple[str, int], bool]:
    """(project, hour) -> dirty."""
    with store.session() as session:
        rows = session.execute(
            select(StatsRollupHour.project_id, StatsRollupHour.hour, StatsRollupHour.dirty)
        )
        return {(p, h): bool(d) for p, h, d in rows}


def stored(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert spans as the trace writer does: the spans, then their hours marked, in one transaction."""
    insert_rows(store, rows)
    with store.session() as session:
        mark_dirty(session, rows)


def rollup_rows(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(StatsRollup)) or 0)


def test_histogram_quantiles_are_within_one_percent() -> None:
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(5, 1.5) for _ in range(5000)) + [0.0] * 20
    values.sort()
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    for q in (0.0, 0.01, 0.5, 0.95, 0.99, 1.0):
        position = q * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        exact = values[low] + (values[high] - values[low]) * (position - low)
        (approx,) = histogram.quantiles([q])
        assert approx == pytest.approx(exact, rel=0.01, abs=1e-12)
    assert Histogram().quantiles([0.5]) == [None]


def test_the_writer_marks_the_hours_of_gateway_and_ingested_spans(store: Store) -> None:
    async def main() -> None:
        writer = TraceWriter(store, on_stored=mark_dirty)
        writer.start()
        writer.record(span(PROJECT, T0 + timedelta(minutes=10)))  # a gateway call
        # An application's spans, through OTLP ingest: not spend, but stats all the same.
        writer.record_many(
            [span(PROJECT, T0 + 2 * HOUR), span(OTHER, T0 + timedelta(minutes=59))], ingested=True
        )
        await writer.close()

    asyncio.run(main())
    assert marks(store) == {(PROJECT, H0): True, (PROJECT, H0 + 2): True, (OTHER, H0): True}


def test_the_platform_marks_and_runs_the_loop(platform: Platform) -> None:
    assert platform.tracer.on_stored is mark_dirty
    assert any(isinstance(s, RollupLoop) for s in platform.services)
    assert platform.settings.stats_rollup_interval_seconds == 60.0


def test_the_loop_rolls_up_hours_that_ended_and_late_spans_roll_again(store: Store) -> None:
    now = utcnow()
    stored(store, [span(PROJECT, T0 + timedelta(minutes=5), latency_ms=100.0, input_tokens=3)])
    stored(store, [span(PROJECT, T0 + HOUR + timedelta(minutes=5), latency_ms=200.0)])
    stored(store, [span(PROJECT, now - timedelta(seconds=1), latency_ms=300.0)])  # this hour: not yet
    current = hour_of(now - timedelta(seconds=1))

    async def run_loop() -> None:
        loop = RollupLoop(store, interval_seconds=0.05)
        await loop.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not marks(store)[(PROJECT, H0 + 1)]:
                break
        await loop.close()

    asyncio.run(run_loop())
    assert marks(store) == {(PROJECT, H0): False, (PROJECT, H0 + 1): False, (PROJECT, current): True}
    assert rollup_rows(store) == 2

    # A late span for hour 0: dirty again, read from spans meanwhile, then rolled again.
    stored(store, [span(PROJECT, T0 + timedelta(minutes=50), latency_ms=100.0, input_tokens=4)])
    assert marks(store)[(PROJECT, H0)] is True
    with store.session() as session:
        before = session.scalar(select(StatsRollup.requests).where(StatsRollup.hour == H0))
    assert before == 1
    assert roll_up_due(store) == 1
    assert roll_up_due(store) == 0  # nothing left; and a clean hour is not rolled twice
    assert roll_up_hour(store, PROJECT, H0) is False
    with store.session() as session:
        row = session.execute(select(StatsRollup).where(StatsRollup.hour == H0)).scalar_one()
    assert (row.requests, row.input_tokens, row.latency_count) == (2, 7, 2)
    assert marks(store)[(PROJECT, H0)] is False


def test_a_new_score_marks_its_requests_hour_and_its_roll_up_counts_it(store: Store) -> None:
    root = span(PROJECT, T0 + timedelta(minutes=30), latency_ms=100.0)
    stored(store, [root, child(root, start_time=T0 + 2 * HOUR)])  # a child in a later hour
    stored(store, [span(PROJECT, T0 + 3 * HOUR)])
    assert roll_up_due(store) == 3
    # Scores come through the ORM (feedback, evaluators): the root span's hour is marked.
    with store.session() as session:
        session.add(Score(**score(root, "thumbs", 1.0, source="human")))
        session.add(Score(**score(root, "number", 0.5, source="evaluator", name="judge")))
        session.add(Score(**(score(root, "thumbs", 1.0, source="human") | {"trace_id": "f" * 32})))
    assert marks(store) == {(PROJECT, H0): True, (PROJECT, H0 + 2): False, (PROJECT, H0 + 3): False}
    assert roll_up_due(store) == 1
    with store.session() as session:
        row = session.execute(select(StatsRollup).where(StatsRollup.hour == H0)).scalar_one()
    assert (row.feedback, row.thumbs, row.thumbs_up, row.scores) == (1, 1, 1, {"judge": [0.5, 1]})


def test_rolling_up_an_existing_database_and_retention(store: Store) -> None:
    now = utcnow().replace(microsecond=0)
    with store.session() as session:
        row = Project(name="short", retention_days=7, created_at=now)
        session.add(row)
    project = row.id
    old = [span(project, now - timedelta(days=10, hours=n)) for n in range(3)]
    young = [span(project, now - timedelta(days=2, hours=n)) for n in range(2)]
    insert_rows(store, old + young)  # written before the upgrade: no hour is marked
    assert marks(store) == {}
    assert roll_up_all(store) == 5
    assert roll_up_all(store) == 0
    assert rollup_rows(store) == 5

    enforce(store, default_days=30, now=now)

    assert set(marks(store)) == {(project, hour_of(r["start_time"])) for r in young}
    assert rollup_rows(store) == 2


# --- the long-range reads match the exact pass ---------------------------------------------------

MODELS = [("gpt", "openai"), ("claude", "anthropic"), ("llama", "local")]
START = T0 + timedelta(minutes=17)  # not on an hour: the first and last hours are partial
END = T0 + timedelta(days=3, hours=5, minutes=13)


def generated(seed: int = 5) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    spans: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    minute = -90
    while minute < (END - T0).total_seconds() / 60 + 90:
        minute += rng.choice([2, 5, 9])
        model, provider = rng.choice(MODELS)
        columns: dict[str, Any] = {
            "model": model,
            "provider": provider,
            "endpoint": rng.choice([None, "support", "search"]),
            "prompt_name": rng.choice([None, "greet"]),
            "prompt_version": rng.choice([1, 2]),
            "variant": rng.choice([None, "a", "b"]),
            "key_id": rng.choice(["k1", "k2"]),
            "user": rng.choice(["alice", "bob", None]),
            "input_tokens": rng.randint(1, 500),
            "output_tokens": rng.choice([None, rng.randint(1, 200)]),
            "cost": rng.choice([None, rng.random() / 100]),
            "latency_ms": rng.choice([None, 0.0, rng.lognormvariate(6, 1)]),
            "ttft_ms": rng.choice([None, rng.lognormvariate(4, 1)]),
            "status": "error" if rng.random() < 0.1 else "ok",
        }
        if columns["prompt_name"] is None:
            columns["prompt_version"] = None
        root = span(PROJECT, T0 + timedelta(minutes=minute, seconds=rng.random() * 59), **columns)
        spans.append(root)
        if rng.random() < 0.3:  # an application's step with a model call under it
            spans.append(
                child(root, model=model, input_tokens=5, output_tokens=7, cost=0.001, latency_ms=9999.0)
            )
        if rng.random() < 0.2:
            scores.append(score(root, "thumbs", rng.choice([1.0, -1.0]), source="human"))
        if rng.random() < 0.3:
            scores.append(score(root, "number", rng.randint(1, 5) / 5, source="evaluator", name="judge"))
        if rng.random() < 0.05:
            scores.append(score(root, "comment", None, source="api"))
    spans.append(span(OTHER, T0 + 5 * HOUR, latency_ms=1.0, model="gpt"))  # another project
    return spans, scores


def assert_close(rolled: Metrics, exact: Metrics) -> None:
    assert (rolled.volume, rolled.errors) == (exact.volume, exact.errors)
    assert (rolled.input_tokens, rolled.output_tokens) == (exact.input_tokens, exact.output_tokens)
    assert rolled.cost == pytest.approx(exact.cost, rel=1e-9, abs=1e-12)
    assert (rolled.feedback_count, rolled.thumbs_count, rolled.thumbs_up) == (
        exact.feedback_count,
        exact.thumbs_count,
        exact.thumbs_up,
    )
    assert rolled.scores.keys() == exact.scores.keys()
    for name, stat in exact.scores.items():
        assert rolled.scores[name].count == stat.count
        assert rolled.scores[name].mean == pytest.approx(stat.mean, rel=1e-9)
    for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms"):
        got, want = getattr(rolled, name), getattr(exact, name)
        assert (got is None) == (want is None), name
        if want is not None:
            assert got == pytest.approx(want, rel=0.01, abs=1e-9), name


def test_long_ranges_read_roll_ups_and_match_the_exact_pass(store: Store) -> None:
    spans, scores = generated()
    insert_rows(store, spans, scores)
    roll_up_all(store)
    # Some hours are not rolled up and clean: a late span in one, another marked but not rolled.
    late = span(PROJECT, T0 + 30 * HOUR + timedelta(minutes=2), latency_ms=12345.0, model="gpt")
    stored(store, [late])
    stored(store, [span(PROJECT, T0 + 50 * HOUR, latency_ms=5.0, model="claude", provider="anthropic")])
    with store.session() as session:
        session.execute(
            StatsRollupHour.__table__.delete().where(StatsRollupHour.hour == H0 + 60)  # never rolled
        )
    service = StatsService(store)
    exact = Aggregator(store)
    filters = StatsFilters(start=START, end=END)
    narrow = StatsFilters(start=START, end=END, model="gpt", variant="a")

    for bucket in (Bucket.hour, Bucket.day):
        for f in (filters, narrow):
            series = service.timeseries(PROJECT, f, bucket)
            assert series.approximate
            want = exact.run(PROJECT, f, [bucket_expression(store.dialect, bucket.seconds)])
            assert_close(series.total, want.total)
            numbers = {int(p.time.timestamp()) // bucket.seconds: p.metrics for p in series.points}
            assert {k for k, m in numbers.items() if m != Metrics()} == {k[0] for k in want.groups}
            for (number,), metrics in want.groups.items():
                assert_close(numbers[number], metrics)
    # A user's series and totals come from the per-user roll-ups (migration 0023), and so do a day's.
    day = StatsFilters(start=START + 25 * HOUR + timedelta(minutes=17), end=START + 49 * HOUR)
    for f in (StatsFilters(start=START, end=END, user="alice"), day):
        series = service.timeseries(PROJECT, f, Bucket.hour)
        assert series.approximate
        want = exact.run(PROJECT, f, [bucket_expression(store.dialect, HOUR_SECONDS)])
        assert_close(series.total, want.total)
        numbers = {int(p.time.timestamp()) // HOUR_SECONDS: p.metrics for p in series.points}
        for (number,), metrics in want.groups.items():
            assert_close(numbers[number], metrics)
    for f, by in (
        (filters, Dimension.user),
        (day, Dimension.user),
        (StatsFilters(start=START, end=END, user="bob"), Dimension.user),
        (day, Dimension.model),
    ):
        breakdown = service.breakdown(PROJECT, f, by, limit=500)
        assert breakdown.approximate
        want = exact.run(PROJECT, f, DIMENSION_COLUMNS[by])
        rows = {tuple(r.group.values()): r.metrics for r in breakdown.rows}
        assert rows.keys() == want.groups.keys()
        for key, metrics in want.groups.items():
            assert_close(rows[key], metrics)
        assert_close(breakdown.total, want.total)
    for by in (Dimension.model, Dimension.provider, Dimension.endpoint, Dimension.prompt, Dimension.variant):
        breakdown = service.breakdown(PROJECT, filters, by, limit=500)
        assert breakdown.approximate
        want = exact.run(PROJECT, filters, DIMENSION_COLUMNS[by])
        rows = {tuple(r.group.values()): r.metrics for r in breakdown.rows}
        assert rows.keys() == want.groups.keys()
        for key, metrics in want.groups.items():
            assert_close(rows[key], metrics)
        assert_close(breakdown.total, want.total)
    assert_close(service.totals(PROJECT, filters), exact.run(PROJECT, filters).total)


def user_days(store: Store) -> dict[int, int]:
    """Day number -> how many `user_day` rows it has."""
    with store.session() as session:
        rows = session.execute(
            select(StatsRollupFacet.hour, func.count())
            .where(StatsRollupFacet.facet == USER_DAY)
            .group_by(StatsRollupFacet.hour)
        )
        return {hour // 24: int(count) for hour, count in rows}


def assert_by_user(store: Store, filters: StatsFilters) -> None:
    """The breakdown by user and one user's totals from the roll-ups equal the exact pass's."""
    service, exact = StatsService(store), Aggregator(store)
    breakdown = service.breakdown(PROJECT, filters, Dimension.user, limit=500)
    assert breakdown.approximate
    want = exact.run(PROJECT, filters, DIMENSION_COLUMNS[Dimension.user])
    rows = {tuple(r.group.values()): r.metrics for r in breakdown.rows}
    assert rows.keys() == want.groups.keys()
    for key, metrics in want.groups.items():
        assert_close(rows[key], metrics)
    assert_close(breakdown.total, want.total)
    for user in ("alice", None):
        one = dataclasses.replace(filters, user=user) if user else filters
        assert_close(service.totals(PROJECT, one), exact.run(PROJECT, one).total)


def test_whole_days_by_user_read_the_day_rows_and_match_the_exact_pass(store: Store) -> None:
    spans, scores = generated()
    insert_rows(store, spans, scores)
    roll_up_all(store)
    # Spans run from T0 - 90 min to END + 90 min: days 0, 1 and 2 have all 24 hours rolled up.
    assert set(user_days(store)) == {D0, D0 + 1, D0 + 2}
    assert user_days(store)[D0] == 3  # alice, bob and no user
    filters = StatsFilters(start=START, end=END)
    assert_by_user(store, filters)
    # A late span makes its hour dirty: that day is read by the hour (and that hour from spans)
    # until the hour is rolled again, which writes the day again with it.
    late = span(PROJECT, T0 + 30 * HOUR + timedelta(minutes=2), latency_ms=12345.0, user="carol", cost=0.5)
    stored(store, [late])
    assert_by_user(store, filters)
    # Another hour of that day rolled while this one is dirty: the day keeps no rows (they would
    # leave the late span out once its hour is clean).
    roll_up_hour(store, PROJECT, H0 + 40, only_dirty=False)
    assert D0 + 1 not in user_days(store)
    assert roll_up_due(store) == 1
    assert user_days(store)[D0 + 1] == 4  # carol too
    assert_by_user(store, filters)
    # A new score (through the ORM, as feedback comes) marks its request's hour: the same.
    root = next(s for s in spans if s["start_time"] >= T0 + 55 * HOUR and s["parent_span_id"] is None)
    with store.session() as session:
        session.add(Score(**score(root, "number", 0.25, source="evaluator", name="judge")))
    assert D0 + 2 in user_days(store)
    assert_by_user(store, filters)
    assert roll_up_due(store) == 1
    assert_by_user(store, filters)
    # The whole days come from the day rows: without the hourly ones of day 1, still the same.
    with store.session() as session:
        session.execute(
            delete(StatsRollupFacet).where(
                StatsRollupFacet.facet == "user",
                StatsRollupFacet.hour >= H0 + 24,
                StatsRollupFacet.hour < H0 + 48,
            )
        )
    assert_by_user(store, filters)


def test_hours_without_traffic_do_not_keep_a_range_from_roll_ups(store: Store) -> None:
    # A few busy hours over five days: most hours have no span, hence no mark.
    rows = [
        span(PROJECT, T0 + n * 11 * HOUR + timedelta(minutes=m), latency_ms=10.0 * (m + 1), model="gpt")
        for n in range(10)
        for m in range(0, 60, 7)
    ]
    stored(store, rows)
    filters = StatsFilters(start=START, end=START + timedelta(days=5))
    service = StatsService(store)
    roll_up_due(store)
    series = service.timeseries(PROJECT, filters, Bucket.hour)
    assert series.approximate
    want = StatsService(store, rollups=False).timeseries(PROJECT, filters, Bucket.hour)
    assert_close(series.total, want.total)
    for got, exact in zip(series.points, want.points, strict=True):
        assert_close(got.metrics, exact.metrics)


def test_what_roll_ups_cannot_answer_takes_the_exact_path(store: Store) -> None:
    spans, scores = generated()
    insert_rows(store, spans, scores)
    service = StatsService(store)
    filters = StatsFilters(start=START, end=END)
    assert not service.timeseries(PROJECT, filters, Bucket.hour).approximate  # nothing rolled up yet
    roll_up_all(store)
    assert service.timeseries(PROJECT, filters, Bucket.hour).approximate
    # The per-user roll-ups keep no other dimension.
    user_and_model = StatsFilters(start=START, end=END, user="alice", model="gpt")
    assert not service.timeseries(PROJECT, user_and_model, Bucket.hour).approximate
    model = StatsFilters(start=START, end=END, model="gpt")
    assert not service.breakdown(PROJECT, model, Dimension.user).approximate
    by_key = StatsFilters(start=START, end=END, key_id="k1")
    assert not service.breakdown(PROJECT, by_key, Dimension.model).approximate
    assert not service.breakdown(PROJECT, filters, Dimension.key).approximate
    short = StatsFilters(start=START, end=START + timedelta(hours=3))
    assert not service.timeseries(PROJECT, short, Bucket.hour).approximate  # short: exact is cheap
    assert not service.timeseries(None, filters, Bucket.hour).approximate  # every project
    # Too much of the range dirty again (a day and more): exact.
    with store.session() as session:
        mark_dirty(session, [span(PROJECT, T0 + n * HOUR) for n in range(50)])
    assert not service.timeseries(PROJECT, filters, Bucket.hour).approximate


def test_the_loop_backfills_hours_never_marked_a_few_per_round(store: Store) -> None:
    now = utcnow().replace(microsecond=0)
    with store.session() as session:
        row = Project(name="imported", retention_days=30, created_at=now)
        session.add(row)
    project = row.id
    # Eleven hours of spans loaded without marking (e.g. before roll-ups existed); the newest is due.
    last_due = hour_of(now - timedelta(minutes=1)) - 1
    rows = [span(project, hour_start(last_due - n) + timedelta(minutes=7)) for n in range(0, 22, 2)]
    insert_rows(store, rows)
    assert marks(store) == {}
    cursor, rounds, rolled = None, 0, 0
    while True:
        cursor, filled = backfill(store, cursor, limit=2, window=5, now=now)
        rolled, rounds = rolled + filled, rounds + 1
        assert filled <= 2
        if cursor is None:
            break
    assert rolled == 11
    assert rounds >= 6  # a few hours per round, not all at once
    assert set(marks(store)) == {(project, last_due - n) for n in range(0, 22, 2)}
    assert not any(marks(store).values())
    assert backfill(store, None, now=now) == (None, 0)  # nothing left: one window reaches the oldest

    async def one_round() -> None:  # the loop runs it: a marked hour and a never-marked one
        insert_rows(store, [span(project, hour_start(last_due - 30))])
        stored(store, [span(project, hour_start(last_due) + timedelta(minutes=9))])
        loop = RollupLoop(store, interval_seconds=60)
        await loop.run_round()

    asyncio.run(one_round())
    assert marks(store)[(project, last_due)] is False
    assert (project, last_due - 30) not in marks(store)  # beyond the first window of 24 hours
    assert backfill(store, last_due - 24, now=now) == (None, 1)  # the next round's window
