"""Bounded catch-all partitions of the trace tables on PostgreSQL (migration 0023): the migration
replaces 0022's default partition on a database with rows and back, every timestamp has a
partition (no insert fails, nothing is lost), days are made out of the catch-alls with their rows,
retention widens `_before` over the first day, and a newest-first page reads the days in order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, select, text

from fmops.store import Store, upgrade, utcnow
from fmops.store import partitions as parts
from fmops.store.migrate import _config
from fmops.store.models import Project, Span, SpanTag
from fmops.tracing.query import TraceQuery
from fmops.tracing.retention import enforce, ensure_partitions
from support.databases import postgres_database
from support.stats_data import child, insert_rows, score, span
from support.trace_answers import trace_answers

NOW = utcnow().replace(microsecond=0)
DAY = timedelta(days=1)
PAST = datetime(1990, 5, 17, 8, tzinfo=UTC)  # long before any day partition
FUTURE = datetime(2999, 1, 2, 3, tzinfo=UTC)  # long after


@pytest.fixture
def pg() -> Iterator[Store]:
    with postgres_database(migrated=True) as url:
        store = Store(url)
        yield store
        store.dispose()


def _project(store: Store, name: str, days: int | None = None) -> str:
    with store.session() as session:
        row = Project(name=name, retention_days=days)
        session.add(row)
    return row.id


def _where(store: Store, span_id: str) -> str:
    with store.session() as session:
        query = text("SELECT tableoid::regclass::text FROM spans WHERE span_id = :s")
        return str(session.scalar(query, {"s": span_id}))


def _partitions(store: Store) -> dict[str, str]:
    """Partition name -> its bound, for `spans`."""
    with store.session() as session:
        rows = session.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'spans'::regclass"
            )
        )
        return {name: bound for name, bound in rows}


def _counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        spans = session.scalar(select(func.count()).select_from(Span))
        tags = session.scalar(select(func.count()).select_from(SpanTag))
    return int(spans or 0), int(tags or 0)


def test_the_migration_replaces_the_default_partition_on_a_database_with_rows_and_back() -> None:
    with postgres_database() as url:
        store = Store(url)
        try:
            upgrade(store, "0022")
            home = _project(store, "home")
            # 0022 made days for today and ahead, and here one a week ago (0022's way: that day
            # alone): a span between them, or long before or after, lands in its default partition.
            with store.write() as session:
                parts.create_day(session.connection(), parts.DayPartition((NOW - 8 * DAY).date()))
            gap = NOW - 6 * DAY
            rows = [span(home, when, model=f"m{n % 3}") for n, when in enumerate((PAST, gap, FUTURE))]
            rows += [span(home, NOW - n * timedelta(hours=5), model=f"m{n % 3}") for n in range(1, 6)]
            rows[4]["input"] = {"messages": [{"role": "user", "content": "find the needle"}]}
            kid = child(rows[4], start_time=rows[4]["start_time"] + timedelta(seconds=1))
            insert_rows(store, [*rows, kid], [score(rows[4], "thumbs", 1, source="human")])
            with store.write() as session:
                tags = [
                    {"project_id": home, "span_id": r["span_id"], "tag": "red", "start_time": r["start_time"]}
                    for r in rows[::2]
                ]
                session.execute(SpanTag.__table__.insert(), tags)
            assert _where(store, rows[1]["span_id"]) == "spans_default"
            before, counts = trace_answers(store, home, rows[4]["trace_id"], NOW), _counts(store)

            upgrade(store)

            found = _partitions(store)
            assert "spans_default" not in found
            assert found["spans_before"].startswith("FOR VALUES FROM (MINVALUE)")
            assert found["spans_after"].endswith("TO (MAXVALUE)")
            with store.session() as session:
                days = [p.day for p in parts.day_partitions(session.connection())]
            assert days == [days[0] + n * DAY for n in range(len(days))], "no day missing between"
            assert gap.date() in days
            assert NOW.date() + parts.AHEAD_DAYS * DAY in days
            assert _where(store, rows[0]["span_id"]) == "spans_before"
            assert _where(store, rows[1]["span_id"]) == parts.DayPartition(gap.date()).name()
            assert _where(store, rows[2]["span_id"]) == "spans_after"
            assert _counts(store) == counts
            assert trace_answers(store, home, rows[4]["trace_id"], NOW) == before

            with store.engine.connect() as conn:
                command.downgrade(_config(conn), "0022")
                conn.commit()
            found = _partitions(store)
            assert "spans_default" in found
            assert "spans_before" not in found
            assert "spans_after" not in found
            assert _where(store, rows[0]["span_id"]) == "spans_default"
            assert _counts(store) == counts
            assert trace_answers(store, home, rows[4]["trace_id"], NOW) == before
        finally:
            store.dispose()


def test_any_timestamp_is_stored_and_days_made_later_take_their_rows(pg: Store) -> None:
    home = _project(pg, "home")
    ensure_partitions(pg, NOW)
    with pg.session() as session:
        first = parts.day_partitions(session.connection())[0]
    ahead = parts.DayPartition(NOW.date() + (parts.AHEAD_DAYS + 3) * DAY)
    early = parts.DayPartition(first.day - 3 * DAY)
    rows = [span(home, when) for when in (PAST, FUTURE, ahead.start + timedelta(hours=2))]
    rows.append(span(home, early.start + timedelta(hours=7)))
    insert_rows(pg, rows)
    assert [_where(pg, r["span_id"]) for r in rows] == [
        "spans_before",
        "spans_after",
        "spans_after",
        "spans_before",
    ]

    with pg.write() as session:
        assert parts.create_day(session.connection(), ahead) == 1
        assert parts.create_day(session.connection(), early) == 1
    assert _where(pg, rows[2]["span_id"]) == ahead.name()
    assert _where(pg, rows[3]["span_id"]) == early.name()
    assert [_where(pg, r["span_id"]) for r in rows[:2]] == ["spans_before", "spans_after"]
    with pg.session() as session:
        days = [p.day for p in parts.day_partitions(session.connection())]
    assert days == [early.day + n * DAY for n in range(len(days))]
    assert days[-1] == ahead.day
    found = _partitions(pg)
    assert early.start.strftime("%Y-%m-%d") in found["spans_before"]
    assert (ahead.end).strftime("%Y-%m-%d") in found["spans_after"]
    assert _counts(pg)[0] == 4
    # The far ones are found like any other, newest first.
    page = TraceQuery(pg).search(home)
    assert [s.span_id for s in page.spans] == [r["span_id"] for r in (rows[1], rows[2], rows[3], rows[0])]


def test_retention_drops_the_first_day_into_before_and_empties_a_later_one(pg: Store) -> None:
    short, keeper = _project(pg, "short", 5), _project(pg, "keeper", 0)
    old, kept, later = (parts.DayPartition((NOW - n * DAY).date()) for n in (30, 20, 10))
    with pg.write() as session:
        parts.create_day(session.connection(), old)
    rows = [span(short, old.start + timedelta(hours=1)), span(keeper, kept.start + timedelta(hours=1))]
    rows.append(span(short, later.start + timedelta(hours=1)))
    insert_rows(pg, rows)

    done = enforce(pg, default_days=0, now=NOW)

    with pg.session() as session:
        days = {p.day for p in parts.day_partitions(session.connection())}
        left = set(session.scalars(select(Span.span_id)))
    assert left == {rows[1]["span_id"]}
    assert done.spans_deleted == 2
    assert old.day not in days, "the first day dropped, up to the kept one"
    assert kept.day in days
    assert later.day in days, "a day after a kept one is emptied, not dropped"
    assert kept.start.strftime("%Y-%m-%d") in _partitions(pg)["spans_before"]
    # A late span of a dropped day is still stored, in `_before`, and retention takes it next round.
    late = span(short, old.start + timedelta(hours=3))
    insert_rows(pg, [late])
    assert _where(pg, late["span_id"]) == "spans_before"
    again = enforce(pg, default_days=0, now=NOW)
    assert again.spans_deleted == 1
    assert enforce(pg, default_days=0, now=NOW).spans_deleted == 0


def test_a_newest_first_page_reads_the_days_in_order(pg: Store) -> None:
    """No merge of every day's index (0022's default partition forced one): an ordered Append."""
    home = _project(pg, "home")
    with pg.write() as session:
        parts.create_day(session.connection(), parts.DayPartition((NOW - 10 * DAY).date()))
    insert_rows(pg, [span(home, NOW - n * DAY) for n in range(10)])
    with pg.session() as session:
        session.execute(text("ANALYZE spans"))
        session.execute(text("SET LOCAL enable_seqscan = off"))  # the plan of a big table
        plan = "\n".join(
            session.scalars(
                text(
                    "EXPLAIN SELECT span_id FROM spans WHERE project_id = :p "
                    "ORDER BY start_time DESC, span_id DESC LIMIT 50"
                ),
                {"p": home},
            )
        )
    assert "Merge Append" not in plan, plan
