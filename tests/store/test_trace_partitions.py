"""The day-partitioned trace tables on PostgreSQL (migration 0022): the migration keeps existing
rows and answers, partitions are made ahead and rows land in their day, retention drops whole
days and keeps newer rows, and the writer inserts a batch in multi-row statements.
SQLite has no partitions: the same calls are no-ops there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, func, select, text

from fmops.store import Store, upgrade, utcnow
from fmops.store import partitions as parts
from fmops.store.migrate import _config
from fmops.store.models import Project, Score, Span, SpanTag
from fmops.tracing.retention import enforce, ensure_partitions
from fmops.tracing.writer import TraceWriter
from support.databases import postgres_database
from support.stats_data import child, insert_rows, score, span
from support.trace_answers import trace_answers

NOW = utcnow().replace(microsecond=0)


def _before_partitions() -> str:
    """The revision 0022 follows (whatever the chain says, so the test survives a re-chaining)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from fmops.store.migrate import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    down = ScriptDirectory.from_config(cfg).get_revision("0022").down_revision
    assert isinstance(down, str)
    return down


DAY = timedelta(days=1)


@pytest.fixture
def pg() -> Iterator[Store]:
    with postgres_database(migrated=True) as url:
        store = Store(url)
        yield store
        store.dispose()


def _project(store: Store, name: str, days: int | None) -> str:
    with store.session() as session:
        row = Project(name=name, retention_days=days)
        session.add(row)
    return row.id


def _where(store: Store, span_id: str) -> str:
    """The partition a span is stored in."""
    with store.session() as session:
        query = text("SELECT tableoid::regclass::text FROM spans WHERE span_id = :s")
        return str(session.scalar(query, {"s": span_id}))


def test_the_migration_partitions_a_database_with_rows_and_answers_the_same() -> None:
    with postgres_database() as url:
        store = Store(url)
        try:
            upgrade(store, _before_partitions())
            home = _project(store, "home", None)
            rows = [
                span(
                    home,
                    NOW - n * DAY - n * timedelta(hours=3),
                    model=f"m{n % 3}",
                    status="ok" if n % 4 else "error",
                )
                for n in range(12)
            ]
            rows[5]["input"] = {"messages": [{"role": "user", "content": "find the needle"}]}
            kid = child(rows[2], start_time=rows[2]["start_time"] + timedelta(seconds=1))
            insert_rows(store, [*rows, kid], [score(rows[2], "thumbs", 1, source="human")])
            with store.write() as session:
                tags = [
                    {"project_id": home, "span_id": r["span_id"], "tag": "red", "start_time": r["start_time"]}
                    for r in rows[::3]
                ]
                session.execute(SpanTag.__table__.insert(), tags)
            before = trace_answers(store, home, rows[2]["trace_id"], NOW)

            upgrade(store)

            with store.session() as session:
                conn = session.connection()
                assert parts.is_partitioned(conn)
                days = {p.day for p in parts.day_partitions(conn)}
                assert session.scalar(select(func.count()).select_from(Span)) == 13
                assert session.scalar(select(func.count()).select_from(SpanTag)) == 4
            assert {r["start_time"].date() for r in rows} <= days, "a day partition for every day with spans"
            assert NOW.date() + parts.AHEAD_DAYS * DAY in days
            assert (
                _where(store, rows[7]["span_id"]) == parts.DayPartition(rows[7]["start_time"].date()).name()
            )
            assert trace_answers(store, home, rows[2]["trace_id"], NOW) == before

            # And back: the plain tables again, with the same rows.
            with store.engine.connect() as conn:
                command.downgrade(_config(conn), _before_partitions())
                conn.commit()
            with store.session() as session:
                assert not parts.is_partitioned(session.connection())
            assert trace_answers(store, home, rows[2]["trace_id"], NOW) == before
        finally:
            store.dispose()


def test_days_are_made_ahead_and_rows_land_in_their_day(pg: Store) -> None:
    home = _project(pg, "home", None)
    with pg.session() as session:
        first = parts.day_partitions(session.connection())[0]
    far = first.start - 3 * DAY + timedelta(hours=5)
    old, today = span(home, far), span(home, NOW)
    insert_rows(pg, [old])
    assert _where(pg, old["span_id"]) == "spans_before", "no day for it: a catch-all (0023)"
    made = ensure_partitions(pg, NOW)
    assert made is not None
    with pg.session() as session:
        days = {p.day for p in parts.day_partitions(session.connection())}
    assert {NOW.date() + n * DAY for n in range(parts.AHEAD_DAYS + 1)} <= days
    assert ensure_partitions(pg, NOW) == [], "made once"
    insert_rows(pg, [today])
    assert _where(pg, today["span_id"]) == parts.DayPartition(NOW.date()).name()
    # A day made later takes its rows out of the catch-all (and the days between are made too).
    with pg.write() as session:
        assert parts.create_day(session.connection(), parts.DayPartition(far.date())) == 1
    assert _where(pg, old["span_id"]) == parts.DayPartition(far.date()).name()


def test_sqlite_has_no_partitions(tmp_path: Any) -> None:
    from support.databases import migrated_sqlite_url

    store = Store(migrated_sqlite_url(tmp_path))
    try:
        assert ensure_partitions(store, NOW) is None
        with store.session() as session:
            assert not parts.is_partitioned(session.connection())
    finally:
        store.dispose()


def test_retention_drops_a_day_past_every_projects_days_and_deletes_rows_elsewhere(pg: Store) -> None:
    short, long, forever = _project(pg, "short", 7), _project(pg, "long", 30), _project(pg, "forever", 0)
    gone_day, shared_day, kept_day = (parts.DayPartition((NOW - n * DAY).date()) for n in (40, 10, 50))
    with pg.write() as session:
        for day in (gone_day, shared_day, kept_day):
            parts.create_day(session.connection(), day)
    at = {d: d.start + timedelta(hours=12) for d in (gone_day, shared_day, kept_day)}
    gone = [span(short, at[gone_day]), span(long, at[gone_day])]
    # A trace across days: its old root goes with its day, its score stays with the younger child.
    crossing = span(long, at[gone_day] + timedelta(hours=1))
    crossing_child = child(crossing, start_time=at[shared_day])
    shared_short, shared_long = span(short, at[shared_day]), span(long, at[shared_day])
    kept = span(forever, at[kept_day])  # a project keeping forever keeps its day
    kept_short = span(short, at[kept_day])
    rows = [*gone, crossing, crossing_child, shared_short, shared_long, kept, kept_short]
    insert_rows(
        pg, rows, [score(gone[1], "thumbs", 1, source="human"), score(crossing, "thumbs", -1, source="human")]
    )

    done = enforce(pg, default_days=30, now=NOW)

    with pg.session() as session:
        days = {p.day for p in parts.day_partitions(session.connection())}
        left = set(session.scalars(select(Span.span_id)))
        scored = set(session.scalars(select(Score.trace_id)))
        # After the kept day it is truncated, and dropped once it is the first (0023).
        emptied = gone_day.day not in days or parts.count_rows(session.connection(), gone_day) == 0
    assert emptied
    assert {shared_day.day, kept_day.day} <= days
    assert left == {crossing_child["span_id"], shared_long["span_id"], kept["span_id"]}
    assert scored == {crossing["trace_id"]}
    assert done.days_dropped >= 1  # and empty past days of the template database, if any
    assert done.spans_deleted == len(rows) - 3
    assert done.scores_deleted == 1
    again = enforce(pg, default_days=30, now=NOW)
    assert (again.spans_deleted, again.scores_deleted) == (0, 0)


def test_the_writer_inserts_a_batch_in_multi_row_statements(pg: Store) -> None:
    home = _project(pg, "home", None)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO spans"):
            statements.append(statement)

    event.listen(pg.engine, "before_cursor_execute", seen)
    rows = [span(home, NOW - timedelta(seconds=n)) for n in range(1200)]

    async def main() -> TraceWriter:
        writer = TraceWriter(pg, batch_size=2000)
        writer.record_many(rows, ingested=True)
        await writer.flush()
        writer.record_many([dict(rows[0])], ingested=True)  # a replay: the same span, stored once
        await writer.flush()
        return writer

    writer = asyncio.run(main())
    assert writer.written == 1200
    assert writer.replayed == 1
    # SQLAlchemy's insertmanyvalues: a page of up to 1,000 rows per INSERT, not one per span.
    assert 2 <= len(statements) <= 3, len(statements)
