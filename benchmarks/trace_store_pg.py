"""The trace store at scale on PostgreSQL: 10,000,000 spans in day partitions, the console's trace
queries timed against the 300 ms target (issue 19), ingest in spans/s, and retention dropping a day.

Creates a database (`--db`, default fmops_bench_traces, dropped first), migrates it to head (day-
partitioned `spans` and `span_tags`, migration 0022, with bounded catch-all partitions, 0023), and
generates the spans server-side with generate_series in time order, as a live system writes
them: `--days` days up to now, 3 projects (80/15/5%), traces of a root call and a child step, 20
models (a few take most calls), 1,000 users, sessions of ~10 calls, 3% errors, 10% cache hits, tags
on 10% of calls, prompts about 1,000 topics. Indexes are built after the load (as a bulk import
would), then ANALYZE.

Then, for the busiest project: `TraceQuery` as the API runs it (list recent, filter by model,
status, user, session, a 7-day range, a cursor page, a tag, free text frequent, rare and absent, a
trace's detail) and `StatsService` over a day and a week (from the hourly roll-ups, computed for
the last 8 days first, as the server's roll-up loop keeps them; a breakdown by user from the
per-user roll-ups, 0023). `--reuse` migrates the kept database to head first. Each is the
median of 7 runs after a warm-up. Then the trace writer's ingest on top of the 10M (spans/s) and
retention: one day partition dropped (its ~1/days of the spans) against deleting the same number
of rows chunk by chunk the way SQLite must. `--keep` keeps the database; otherwise it is dropped.

    .venv/bin/python benchmarks/trace_store_pg.py [--spans 10000000] [--days 30] [--keep] [--reuse]

Raw figures: benchmarks/results/trace_store_pg.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from _harness import load, save_result
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from fmops.stats import Bucket, Dimension, StatsFilters, StatsService
from fmops.stats.rollup import hour_of, roll_up_hour
from fmops.store import Store, upgrade
from fmops.store import partitions as parts
from fmops.store.models import Project, Span
from fmops.tracing.query import TraceFilters, TraceQuery
from fmops.tracing.retention import _delete_chunk, enforce, policies
from fmops.tracing.writer import TraceWriter

TARGET_MS = 300.0
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PROJECTS = ("bench-main", "bench-second", "bench-third")
RESULTS: dict[str, Any] = {"queries": {}}

# One span per g: traces are (root, child) pairs; time grows with g, so rows arrive in time order.
# Project, model, user, status... are hashes of g (deterministic, skewed where real traffic is).
FILL = """
INSERT INTO spans (span_id, trace_id, parent_span_id, project_id, name, kind, start_time, end_time,
  status, status_message, model, provider, response_model, key_id, "user", session_id, endpoint,
  prompt_name, prompt_version, variant, input_tokens, output_tokens, cost, latency_ms, ttft_ms,
  cache_hit, input, output, attributes)
SELECT
  md5('s' || g), md5('t' || (g / 2)), CASE WHEN g % 2 = 1 THEN md5('s' || (g - 1)) END,
  (ARRAY[CAST(:p0 AS varchar), CAST(:p1 AS varchar), CAST(:p2 AS varchar)])
    [CASE WHEN h % 100 < 80 THEN 1 WHEN h % 100 < 95 THEN 2 ELSE 3 END],
  CASE WHEN g % 2 = 0 THEN 'chat ' || m ELSE 'retrieve' END,
  CASE WHEN g % 2 = 0 THEN 'llm' ELSE 'retrieval' END,
  t, t + make_interval(secs => lat / 1000),
  CASE WHEN e % 100 < 3 THEN 'error' ELSE 'ok' END,
  CASE WHEN e % 100 < 3 THEN 'upstream returned 500' END,
  m, 'openai', m, md5('k' || (h % 50)), 'user-' || (e % 1000), 'session-' || (g / 20),
  CASE WHEN e % 4 = 0 THEN 'support-bot' END,
  CASE WHEN e % 4 = 0 THEN 'support' END,
  CASE WHEN e % 4 = 0 THEN 1 + e % 3 END,
  NULL,
  10 + h % 2000, 1 + h % 800, (h % 1000) / 100000::float8, lat,
  CASE WHEN g % 2 = 0 THEN lat / 4 END,
  e % 10 = 7,
  jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user',
    'content', 'question ' || g || ' about topic ' || (h % 997) || ' from the ' || m || ' team'))),
  jsonb_build_object('role', 'assistant', 'content', 'answer ' || g),
  jsonb_build_object('gen_ai.system', 'openai', 'gen_ai.request.model', m)
FROM (
  SELECT g, h, e, CAST(:t0 AS timestamptz) + (g * CAST(:span_seconds AS float8)) * interval '1 second' AS t,
    -- a Pareto draw: a few models take most calls
    'model-' || lpad((least(floor(1 / power(1 - (h % 9973) / 9973::float8, 1 / 1.2::float8)), 20) - 1)
      ::int::text, 2, '0') AS m,
    exp(5 + 2.5 * (e % 1000) / 1000::float8) AS lat  -- 150 ms to 1.8 s, a quarter over 1 s
  FROM (
    SELECT g, abs(hashint8(g)::bigint) AS h, abs(hashtext(g::text)::bigint) AS e
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g
  ) x
) y
"""
TAGS = """
INSERT INTO span_tags
SELECT project_id, span_id, (ARRAY['red', 'green', 'blue', 'beta', 'vip'])[1 + abs(hashtext(span_id)) % 5],
  start_time
FROM spans WHERE parent_span_id IS NULL AND abs(hashtext(span_id)) % 10 = 0
"""


def timed(label: str, run: Callable[[], Any], repeat: int = 7) -> Any:
    result = run()  # warm the cache once; then the median of the rest
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - began) * 1000)
    median = statistics.median(times)
    verdict = "ok" if median < TARGET_MS else "OVER"
    print(f"  {label:<52} median {median:8.1f} ms   max {max(times):8.1f} ms   {verdict}")
    RESULTS["queries"][label] = {"median_ms": median, "max_ms": max(times), "runs": len(times)}
    return result


def _url(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str) -> Store:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    store = Store(_url(name))
    upgrade(store)
    return store


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fill(store: Store, count: int, days: int, now: datetime) -> list[str]:
    with store.session() as session:
        rows = [Project(name=name, retention_days=0) for name in PROJECTS]
        session.add_all(rows)
    ids = [r.id for r in rows]
    t0 = now - timedelta(days=days)
    with store.engine.begin() as conn:
        for n in range(days + 1):
            day = parts.DayPartition((t0 + n * timedelta(days=1)).date())
            if day.day not in {p.day for p in parts.day_partitions(conn)}:
                parts.create_day(conn, day)
    began = time.perf_counter()
    with store.engine.connect() as conn:
        conn.execute(text("SET synchronous_commit = off"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        indexes = [
            (name, definition)
            for table in parts.PARTITIONED
            for name, definition in conn.execute(
                text(
                    "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:t) "
                    "AND NOT i.indisprimary"
                ),
                {"t": table},
            )
        ]
        for name, _ in indexes:  # built after the load: one sort per index, not a b-tree update per row
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text("ALTER TABLE spans DROP CONSTRAINT pk_spans"))
        conn.execute(text("ALTER TABLE span_tags DROP CONSTRAINT pk_span_tags"))
        conn.commit()
        step = 1_000_000
        params = {"p0": ids[0], "p1": ids[1], "p2": ids[2], "t0": t0, "span_seconds": days * 86400 / count}
        for first in range(0, count, step):
            last = min(first + step, count) - 1
            conn.execute(text(FILL), params | {"first": first, "last": last})
            conn.commit()
            print(f"\r  generated {last + 1:,}/{count:,} spans ({time.perf_counter() - began:.0f} s)", end="")
        print()
        conn.execute(text(TAGS))
        conn.commit()
        loaded = time.perf_counter() - began
        conn.execute(
            text("ALTER TABLE spans ADD CONSTRAINT pk_spans PRIMARY KEY (project_id, span_id, start_time)")
        )
        conn.execute(
            text(
                "ALTER TABLE span_tags ADD CONSTRAINT pk_span_tags"
                " PRIMARY KEY (project_id, span_id, tag, start_time)"
            )
        )
        conn.commit()
        for name, definition in indexes:
            step_began = time.perf_counter()
            # A partitioned table's index reads back as ON ONLY (the parent alone): build them all.
            conn.execute(text(definition.replace(" ON ONLY ", " ON ")))
            conn.commit()
            print(f"  index {name}: {time.perf_counter() - step_began:.0f} s")
        conn.execute(text("ANALYZE"))
        conn.commit()
    RESULTS["fill"] = {"spans": count, "days": days, "load_s": loaded, "total_s": time.perf_counter() - began}
    print(f"  loaded in {loaded:.0f} s, with indexes and ANALYZE {time.perf_counter() - began:.0f} s")
    return ids


def sample(store: Store, project: str) -> dict[str, str]:
    """A user, a session and a trace of the project that exist (recent ones, as a user clicks)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            text(
                'SELECT "user", session_id, trace_id FROM spans WHERE project_id = :p '
                "AND parent_span_id IS NULL ORDER BY start_time DESC LIMIT 1 OFFSET 500"
            ),
            {"p": project},
        ).one()
    return {"user": row[0], "session": row[1], "trace": row[2]}


def queries(store: Store, project: str, now: datetime) -> None:
    query = TraceQuery(store)
    known = sample(store, project)
    week = now - timedelta(days=7)
    print(f"trace queries, project {PROJECTS[0]} (80% of the spans), page of 50 (target {TARGET_MS:.0f} ms):")
    first = timed(
        "list recent calls (root spans)", lambda: query.search(project, TraceFilters(root_only=True))
    )
    timed("list recent spans, next page (cursor)", lambda: query.search(project, cursor=first.next_cursor))
    timed("model", lambda: query.search(project, TraceFilters(model="model-05")))
    timed("status=error", lambda: query.search(project, TraceFilters(status="error")))
    timed(
        "model + status=error + last 7 days",
        lambda: query.search(project, TraceFilters(model="model-03", status="error", start=week, end=now)),
    )
    timed("user", lambda: query.search(project, TraceFilters(user=known["user"])))
    timed("session", lambda: query.search(project, TraceFilters(session_id=known["session"])))
    timed(
        "endpoint + prompt version",
        lambda: query.search(
            project, TraceFilters(endpoint="support-bot", prompt_name="support", prompt_version=2)
        ),
    )
    timed("tag 'vip'", lambda: query.search(project, TraceFilters(tags=("vip",))))
    timed(
        "latency > 1 s + cache hit",
        lambda: query.search(project, TraceFilters(min_latency_ms=1000, cache_hit=True)),
    )
    found = timed(
        "free text 'topic 996' (trigram index)", lambda: query.search(project, TraceFilters(q="topic 996"))
    )
    timed(
        "free text 'topic 996', next page",
        lambda: query.search(project, TraceFilters(q="topic 996"), cursor=found.next_cursor),
    )
    timed(
        "free text, rare: 'answer 4242' (about 2 weeks back)",
        lambda: query.search(project, TraceFilters(q="answer 4242")),
    )
    timed(
        "free text, rare and every trigram common",  # 'question', then 7 digits: one span matches
        lambda: query.search(project, TraceFilters(q="question 1234567 ")),
        repeat=3,
    )
    timed(
        "free text matching nothing (worst case)",
        lambda: query.search(project, TraceFilters(q="no such words zq")),
        repeat=3,
    )
    timed("a trace's detail (tree)", lambda: query.get_trace(project, known["trace"]))
    timed(
        "a trace's spans (trace_id filter)",
        lambda: query.search(project, TraceFilters(trace_id=known["trace"])),
    )


def stats(store: Store, project: str, now: datetime) -> None:
    began = time.perf_counter()
    hours = range(hour_of(now - timedelta(days=8)), hour_of(now))
    for hour in hours:
        roll_up_hour(store, project, hour, only_dirty=False)
    RESULTS["rollups"] = {"hours": len(hours), "seconds": time.perf_counter() - began}
    print(f"  rolled up {len(hours)} hours in {time.perf_counter() - began:.0f} s")
    service = StatsService(store)
    day = StatsFilters(start=now - timedelta(hours=24), end=now)
    week = StatsFilters(start=now - timedelta(days=7), end=now)
    print("stats (dashboards), same project:")
    timed("24 h time series (hourly)", lambda: service.timeseries(project, day))
    timed("24 h breakdown by model", lambda: service.breakdown(project, day, Dimension.model))
    timed("24 h breakdown by user", lambda: service.breakdown(project, day, Dimension.user))
    timed("7 day time series (hourly)", lambda: service.timeseries(project, week))
    timed("7 day time series (daily)", lambda: service.timeseries(project, week, Bucket.day))
    timed("7 day breakdown by model", lambda: service.breakdown(project, week, Dimension.model))
    timed("7 day breakdown by user", lambda: service.breakdown(project, week, Dimension.user))


def ingest(store: Store, project: str, count: int = 40_000) -> None:
    """The trace writer's rate on top of the 10M spans: batches of 2,000, one multi-row INSERT each."""
    now = datetime.now(UTC)
    rows = [
        {
            "span_id": f"ingest{n:026d}",
            "trace_id": f"ingest{n // 2:026d}",
            "project_id": project,
            "name": "chat model-01",
            "kind": "llm",
            "start_time": now - timedelta(milliseconds=n),
            "model": "model-01",
            "provider": "openai",
            "user": f"user-{n % 1000}",
            "status": "ok",
            "input_tokens": 100,
            "output_tokens": 20,
            "latency_ms": 300.0,
            "input": {"messages": [{"role": "user", "content": f"question {n} about ingest"}]},
            "output": {"role": "assistant", "content": f"answer {n}"},
            "attributes": {"gen_ai.system": "openai"},
        }
        for n in range(count)
    ]

    async def run() -> float:
        writer = TraceWriter(store, batch_size=2000, max_memory=count + 1)
        writer.record_many(rows, ingested=True)
        began = time.perf_counter()
        await writer.flush()
        assert writer.written == count, writer.written
        return time.perf_counter() - began

    seconds = asyncio.run(run())
    RESULTS["ingest"] = {"spans": count, "seconds": seconds, "spans_per_s": count / seconds}
    print(
        f"ingest: {count:,} spans through the trace writer in {seconds:.1f} s: {count / seconds:,.0f} spans/s"
    )


def retention(store: Store, days: int, now: datetime) -> None:
    """Drop the oldest day whole, then delete as many rows of the next day chunk by chunk."""
    with store.write() as session:
        session.query(Project).update({Project.retention_days: days - 1})
    began = time.perf_counter()
    done = enforce(store, default_days=0, now=now)
    dropped = time.perf_counter() - began
    print(f"retention: {done.days_dropped} day(s) dropped, {done.spans_deleted:,} spans, in {dropped:.2f} s")
    rows = min(done.spans_deleted, 20_000)
    policy = policies(store, 0)[0]
    cutoff = now - timedelta(days=days - 2)
    began = time.perf_counter()
    deleted = 0
    while deleted < rows and (chunk := _delete_chunk(store, policy, cutoff, 500)[0]):
        deleted += chunk
    rate = deleted / (time.perf_counter() - began)
    print(f"  deleting rows instead, 500 per transaction: {deleted:,} spans at {rate:,.0f} spans/s")
    RESULTS["retention"] = {
        "days_dropped": done.days_dropped,
        "spans_dropped": done.spans_deleted,
        "drop_s": dropped,
        "rows_deleted": deleted,
        "delete_spans_per_s": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", default="fmops_bench_traces")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time the database an earlier --keep run filled")
    args = parser.parse_args()
    load_before = load()
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store(_url(args.db)) if args.reuse else create_database(args.db)
    try:
        if args.reuse:  # filled by an earlier run (--keep): its spans end at that run's time
            began = time.perf_counter()
            before, after = upgrade(store)
            if before != after:
                print(f"migrated {args.db} from {before} to {after} in {time.perf_counter() - began:.1f} s")
                RESULTS["migrated"] = {"from": before, "to": after, "seconds": time.perf_counter() - began}
            with store.session() as session:
                found = {name: pid for name, pid in session.execute(select(Project.name, Project.id))}
                newest = session.scalar(select(func.max(Span.start_time)))
            ids = [found[name] for name in PROJECTS]
            now = newest or now
            RESULTS["fill"] = {"reused": args.db}
            print(f"reusing {args.db}, spans up to {now.isoformat()}")
        else:
            print(f"filling {args.db} with {args.spans:,} spans over {args.days} days")
            ids = fill(store, args.spans, args.days, now)
        with store.engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
            RESULTS["database_size"] = size
        print(f"  database size {size}")
        queries(store, ids[0], now)
        stats(store, ids[0], now)
        ingest(store, ids[1])
        retention(store, args.days, now)
        over = [k for k, v in RESULTS["queries"].items() if v["median_ms"] >= TARGET_MS]
        RESULTS["over_target"] = over
        under = len(RESULTS["queries"]) - len(over)
        print(f"{under} of {len(RESULTS['queries'])} queries under {TARGET_MS:.0f} ms")
        save_result("trace_store_pg", RESULTS, load_before=load_before)
    finally:
        store.dispose()
        if not args.keep:
            drop_database(args.db)


if __name__ == "__main__":
    main()
