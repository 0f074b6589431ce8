"""Dashboard queries over 1,000,000 spans on SQLite: time series and breakdowns, in ms.

Fills a fresh SQLite database the way benchmarks/trace_query.py does (30 days, 20 models, 1000
users, 2 projects, ~3% errors), adds feedback (thumbs on 5% of requests) and judge scores (on 10%),
then times `StatsService` as the API runs it, for the busier project (80% of the spans): once on
that database, and once on a copy that stores the same rows in time order, as a live system does.

    .venv/bin/python benchmarks/stats_query.py [--spans 1000000] [--db /tmp/stats.db]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from trace_query import NOW, PROJECTS, fill, timed

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="reuse this database if it is already filled")
    args = parser.parse_args()
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
    measure(store, f"{args.spans:,} spans, SQLite, written in random time order")
    store.dispose()
    ordered_store = Store(f"sqlite:///{ordered}")
    measure(ordered_store, "the same, written in time order")
    ordered_store.dispose()


if __name__ == "__main__":
    main()
