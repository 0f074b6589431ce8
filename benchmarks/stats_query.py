"""Dashboard queries over 1,000,000 spans on SQLite: time series and breakdowns, in ms.

Fills a fresh SQLite database the way benchmarks/trace_query.py does (30 days, 20 models, 1000
users, 2 projects, ~3% errors), adds feedback (thumbs on 5% of requests) and judge scores (on 10%),
then times `StatsService` as the API runs it, for the busier project (80% of the spans): once on
that database, and once on a copy that stores the same rows in time order, as a live system does.

`--rollups` times the hourly roll-ups instead (fmops.stats.rollup), on a copy of the time-ordered
database (or of `--db`, e.g. /tmp/fmops-console-bench/fmops.db, console_pages.py's cached one),
made at /tmp/fmops-stats-rollups.db:
rolling up every hour from scratch, the trace writer's cost of marking a batch's hours, and 24 h /
7 d / 30 d dashboards read from the roll-ups against the exact pass over the spans.

    .venv/bin/python benchmarks/stats_query.py [--spans 1000000] [--db /tmp/stats.db] [--rollups]

Raw figures: benchmarks/results/stats_query.json (stats_query_rollups.json with --rollups).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _harness import load, save_result
from sqlalchemy import func, insert, select
from trace_query import NOW, PROJECTS, TIMES, fill, timed

from fmops.stats import Bucket, Dimension, StatsFilters, StatsService
from fmops.store import Store, new_id, upgrade
from fmops.store.models import Score, Span

BATCH = 20_000


def add_scores(store: Store, seed: int = 11) -> int:
    """Thumbs on 5% of the requests, a judge score on 10%: what online evaluation and a chat UI leave."""
    rng = random.Random(seed)
    with store.session() as session:
        traces = session.execute(select(Span.trace_id, Span.project_id, Span.start_time)).all()
    rows: list[dict[str, Any]] = []
    for trace_id, project_id, start in traces:
        base = {"project_id": project_id, "trace_id": trace_id, "span_id": None, "label": None}
        base |= {"comment": None, "corrected_output": None, "author": "bench", "key_id": None}
        base |= {"created_at": start + timedelta(seconds=30)}
        draw = rng.random()
        if draw < 0.05:
            value = 1.0 if rng.random() < 0.8 else -1.0
            rows.append(
                base | {"id": new_id(), "name": "thumbs", "kind": "thumbs", "value": value, "source": "human"}
            )
        if draw < 0.10:
            value = rng.randint(1, 5) / 5
            rows.append(
                base
                | {"id": new_id(), "name": "judge", "kind": "number", "value": value, "source": "evaluator"}
            )
    for first in range(0, len(rows), BATCH):
        with store.session() as session:
            session.execute(insert(Score), rows[first : first + BATCH])
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return len(rows)


def time_ordered_copy(source: Path, target: Path) -> None:
    """The same spans and scores, stored in time order: how a live system writes them.

    trace_query.fill inserts spans at random times, so each span of a range sits on its own page;
    traces really arrive (and are written) in time order, and a range's spans share pages.
    """
    copy = Store(f"sqlite:///{target}")
    upgrade(copy)
    with copy.engine.begin() as conn:
        conn.exec_driver_sql(f"ATTACH DATABASE '{source}' AS source")
        conn.exec_driver_sql("INSERT INTO spans SELECT * FROM source.spans ORDER BY start_time")
        conn.exec_driver_sql("INSERT INTO scores SELECT * FROM source.scores ORDER BY created_at")
        # The hours trace_query.fill marked for the roll-ups come along, as a real copy would.
        conn.exec_driver_sql("INSERT INTO stats_rollup_hours SELECT * FROM source.stats_rollup_hours")
    with copy.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    copy.dispose()


def measure(store: Store, label: str) -> None:
    stats = StatsService(store)
    project = PROJECTS[0]
    day = StatsFilters(start=NOW - timedelta(hours=24), end=NOW)
    week = StatsFilters(start=NOW - timedelta(days=7), end=NOW)
    month = StatsFilters(start=NOW - timedelta(days=30), end=NOW)
    window = StatsFilters(start=NOW - timedelta(minutes=5), end=NOW)
    one_model = StatsFilters(start=day.start, end=day.end, model="model-03")
    in_day = stats.totals(project, day).volume
    print(f"{label}; the project has {in_day:,} requests in the last 24 h:")
    timed("24 h time series (hourly)", lambda: stats.timeseries(project, day))
    timed("24 h time series (per minute, 1440 points)", lambda: stats.timeseries(project, day, Bucket.minute))
    timed("24 h breakdown by model", lambda: stats.breakdown(project, day, Dimension.model))
    timed("24 h breakdown by user (1000 groups)", lambda: stats.breakdown(project, day, Dimension.user))
    timed("24 h time series of one model", lambda: stats.timeseries(project, one_model))
    timed("5 min total (an alert rule's evaluation)", lambda: stats.totals(project, window))
    timed("7 day time series (hourly)", lambda: stats.timeseries(project, week), repeat=3)
    timed("7 day breakdown by model", lambda: stats.breakdown(project, week, Dimension.model), repeat=3)
    timed("30 day time series (daily)", lambda: stats.timeseries(project, month), repeat=3)
    timed("30 day breakdown by model", lambda: stats.breakdown(project, month, Dimension.model), repeat=3)


def marking_cost(batches: int = 30, size: int = 2000) -> None:
    """The trace writer's time per 2,000-span batch on SQLite, with and without marking its hours."""
    from fmops.stats.rollup import mark_dirty
    from fmops.store import utcnow
    from fmops.tracing.writer import TraceWriter

    def spans(n: int) -> list[dict[str, Any]]:
        now = utcnow()
        base = {"project_id": PROJECTS[0], "name": "chat", "kind": "llm", "model": "model-01", "cost": 0.001}
        return [
            base | {"span_id": f"{n:08x}{i:08x}", "trace_id": f"{n:016x}{i:016x}", "start_time": now}
            for i in range(size)
        ]

    times: dict[str, list[float]] = {"without": [], "with": []}
    folder = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{folder / 'marking.db'}")
    upgrade(store)
    writers = {"without": TraceWriter(store), "with": TraceWriter(store, on_stored=mark_dirty)}
    for n in range(batches * 2):
        label = "with" if n % 2 else "without"  # interleaved, so both see the same database size
        batch = spans(n)
        began = time.perf_counter()
        writers[label]._write(batch)
        times[label].append((time.perf_counter() - began) * 1000)
    alone = []  # the hook by itself: the writer's timings above vary more than it costs
    for n in range(batches):
        batch = spans(batches * 2 + n)
        with store.session() as session:
            began = time.perf_counter()
            mark_dirty(session, batch)
            alone.append((time.perf_counter() - began) * 1000)
    store.dispose()
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    print(f"  writing a batch of {size:,} spans (SQLite, median of {batches})")
    print(f"    without marking {without:7.2f} ms   with marking {with_:7.2f} ms")
    print(
        f"    the marking alone (mark_dirty: the batch's hours, one upsert) {statistics.median(alone):.2f} ms"
    )


def measure_rollups(source: Path) -> None:
    """Roll up a copy of `source` from scratch, then dashboards from roll-ups against the exact pass."""
    from fmops.stats.rollup import roll_up_all
    from fmops.store.models import StatsRollup

    target = Path(tempfile.gettempdir()) / "fmops-stats-rollups.db"  # replaced on each run
    print(f"copying {source} to {target}")
    for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)  # a killed run's log must not be replayed onto the new copy
    shutil.copyfile(source, target)
    store = Store(f"sqlite:///{target}")
    upgrade(store)
    with store.session() as session:
        project, now = session.execute(
            select(Span.project_id, func.max(Span.start_time))
            .group_by(Span.project_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    now = now + timedelta(minutes=1)  # just past the last span: partial first and last hours
    began = time.perf_counter()
    hours = roll_up_all(store)
    with store.session() as session:
        rows = session.scalar(select(func.count()).select_from(StatsRollup))
    print(f"  rolled up {hours:,} project-hours ({rows:,} rows) in {time.perf_counter() - began:.1f} s")
    marking_cost()
    exact, rolled = StatsService(store, rollups=False), StatsService(store)
    for days in (1, 7, 30):
        window = StatsFilters(start=now - timedelta(days=days), end=now)
        label = "24 h" if days == 1 else f"{days} day"
        kind = "hourly" if days < 30 else "daily"
        assert rolled.timeseries(project, window).approximate == (days > 1)
        timed(f"{label} time series ({kind}), exact", lambda w=window: exact.timeseries(project, w), repeat=3)
        timed(
            f"{label} time series ({kind}), roll-ups",
            lambda w=window: rolled.timeseries(project, w),
            repeat=3,
        )
        timed(
            f"{label} breakdown by model, exact",
            lambda w=window: exact.breakdown(project, w, Dimension.model),
            repeat=3,
        )
        timed(
            f"{label} breakdown by model, roll-ups",
            lambda w=window: rolled.breakdown(project, w, Dimension.model),
            repeat=3,
        )
    store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse this database if it is already filled")
    parser.add_argument("--rollups", action="store_true", help="roll-ups against the exact pass (a copy)")
    args = parser.parse_args()
    load_before = load()
    results = run(args)
    name = "stats_query_rollups" if args.rollups else "stats_query"
    save_result(name, {"spans": args.spans, "ms": results}, load_before=load_before)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]] | dict[str, dict[str, dict[str, float]]]:
    if args.rollups and args.db is not None and args.db.exists() and args.db.name == "fmops.db":
        measure_rollups(args.db)  # an fmops home's database (console_pages.py): already time-ordered
        return dict(TIMES)
    path = args.db or Path(tempfile.mkdtemp()) / "stats.db"
    store = Store(f"sqlite:///{path}")
    upgrade(store)
    with store.session() as session:
        existing = session.scalar(select(func.count()).select_from(Span)) or 0
        scored = session.scalar(select(func.count()).select_from(Score)) or 0
    if existing < args.spans:
        print(f"filling {path} with {args.spans - existing:,} spans")
        print(f"  {fill(store, args.spans - existing):.0f} s")
    if not scored:
        began = time.perf_counter()
        print(f"  {add_scores(store):,} scores in {time.perf_counter() - began:.0f} s")
    ordered = path.with_name(path.stem + "-ordered.db")
    if not ordered.exists():
        time_ordered_copy(path, ordered)
    if args.rollups:
        store.dispose()
        measure_rollups(ordered)
        return dict(TIMES)
    measure(store, f"{args.spans:,} spans, SQLite, written in random time order")
    store.dispose()
    random_order = dict(TIMES)
    TIMES.clear()
    ordered_store = Store(f"sqlite:///{ordered}")
    measure(ordered_store, "the same, written in time order")
    ordered_store.dispose()
    return {"random time order": random_order, "time order": dict(TIMES)}


if __name__ == "__main__":
    main()
