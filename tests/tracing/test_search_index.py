"""The free-text trace search's index (migration 0012), on both backends: the search uses it, its
answers are exactly the scan's before and after the background indexer has run, and updates,
retention's deletes and a reused SQLite rowid keep it true."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import String, Text, cast, delete, or_, select, text, update

from fmops.store import Store, upgrade, utcnow
from fmops.store.migrate import _config
from fmops.store.models import Project, Span
from fmops.tracing import TraceWriter
from fmops.tracing.query import TraceFilters, TraceQuery, _like_pattern
from fmops.tracing.retention import enforce
from fmops.tracing.search_index import SearchIndexer, index_all, index_pending, match_expression
from support.stats_data import span

NOW = utcnow().replace(microsecond=0)
_MATCH = text("SELECT count(*) FROM spans_fts WHERE spans_fts MATCH :match")
TERMS = ["refund", "REFUND policy", "café", "100%_off", "a_b", "no such text at all", "ok", "#7"]


def project(store: Store) -> str:
    with store.session() as session:
        row = Project(name="search", retention_days=30, created_at=NOW - timedelta(days=90))
        session.add(row)
    return row.id


def message(n: int) -> dict[str, Any]:
    words = ["refund policy" if n % 5 == 0 else "shipping", "café" if n % 7 == 0 else "tea", f"#{n}"]
    return {"messages": [{"role": "user", "content": " ".join(words) + (" 100%_off" if n == 3 else "")}]}


def write(store: Store, rows: list[dict[str, Any]]) -> None:
    """Through the trace writer, as the gateway and OTLP ingest store spans."""

    async def main() -> None:
        writer = TraceWriter(store)
        writer.record_many(rows)
        await writer.close()

    asyncio.run(main())


def found(store: Store, project_id: str, term: str) -> set[str]:
    page = TraceQuery(store).search(project_id, TraceFilters(q=term), limit=500)
    return {s.span_id for s in page.spans}


def scanned(store: Store, project_id: str, term: str) -> set[str]:
    """What the search answered before the index: LIKE (SQLite) / ILIKE (PostgreSQL) over every span."""
    pattern = _like_pattern(term)
    if store.dialect == "postgresql":
        match = or_(*(cast(c, Text).ilike(pattern, escape="\\") for c in (Span.input, Span.output)))
    else:
        match = or_(*(cast(c, String).like(pattern, escape="\\") for c in (Span.input, Span.output)))
    with store.session() as session:
        return set(session.scalars(select(Span.span_id).where(Span.project_id == project_id, match)))


def same_as_the_scan(store: Store, project_id: str) -> None:
    for term in TERMS:
        assert found(store, project_id, term) == scanned(store, project_id, term), term


def test_the_index_answers_exactly_as_the_scan_and_follows_every_change(store: Store) -> None:
    project_id = project(store)
    rows = [
        span(project_id, NOW - timedelta(minutes=n), input=message(n), output={"n": n}) for n in range(40)
    ]
    rows += [span(project_id, NOW - timedelta(days=60), input=message(5), output={"old": True})]
    write(store, rows[:20])
    same_as_the_scan(store, project_id)  # nothing indexed yet (SQLite): the new spans are scanned
    assert index_pending(store, batch=7) == (7 if store.dialect == "sqlite" else 0)
    write(store, rows[20:])
    same_as_the_scan(store, project_id)  # part indexed, part not
    index_all(store)
    same_as_the_scan(store, project_id)
    assert len(found(store, project_id, "REFUND policy")) == 9  # 8 young spans and the old one

    with store.session() as session:  # an update rewrites the indexed text
        session.execute(
            update(Span).where(Span.span_id == rows[1]["span_id"]).values(output={"note": "refund policy"})
        )
    assert rows[1]["span_id"] in found(store, project_id, "refund policy")
    assert rows[1]["span_id"] not in found(store, project_id, '"n": 1}')

    enforce(store, default_days=30, now=NOW)  # retention deletes the old span
    assert rows[-1]["span_id"] not in found(store, project_id, "refund")
    same_as_the_scan(store, project_id)
    if store.dialect == "sqlite":  # nothing stale left in the index (external content: rowids)
        with store.session() as session:
            indexed = session.scalar(_MATCH, {"match": match_expression("refund")})
        assert indexed == len(found(store, project_id, "refund"))


def test_a_span_that_reuses_an_indexed_rowid_is_found_at_once(store: Store) -> None:
    project_id = project(store)
    rows = [span(project_id, NOW - timedelta(minutes=n), input=message(n)) for n in range(3)]
    write(store, rows)
    index_all(store)
    with store.session() as session:  # the newest row goes: SQLite hands its rowid out again
        session.execute(delete(Span).where(Span.span_id == rows[-1]["span_id"]))
    reused = span(project_id, NOW, input={"messages": [{"role": "user", "content": "a walrus"}]})
    write(store, [reused])
    assert found(store, project_id, "walrus") == {reused["span_id"]}
    index_all(store)
    assert found(store, project_id, "walrus") == {reused["span_id"]}


def test_deleting_the_newest_spans_brings_the_mark_down_to_what_is_left(store: Store) -> None:
    """Migration 0025: no trigger on insert; the delete trigger lowers the mark instead, so a rowid
    SQLite hands out again is above it (scanned, then indexed), whatever order a delete takes."""
    if store.dialect != "sqlite":
        pytest.skip("not applicable: the SQLite index's mark; pg_trgm indexes are PostgreSQL's own")
    project_id = project(store)
    rows = [span(project_id, NOW - timedelta(minutes=n), input=message(n)) for n in range(10)]
    write(store, rows)
    assert index_all(store) == 10

    def state() -> tuple[int, int]:
        with store.session() as session:
            mark = session.scalar(text("SELECT indexed_rowid FROM spans_fts_state"))
            newest = session.scalar(text("SELECT coalesce(max(rowid), 0) FROM spans"))
        return int(mark), int(newest)

    with store.session() as session:  # the five newest rowids in one statement, an older one kept
        session.execute(text("DELETE FROM spans WHERE rowid > 5 OR rowid = 2"))
    assert state() == (5, 5)
    with store.session() as session:  # nothing above the mark: it stays
        session.execute(text("DELETE FROM spans WHERE rowid = 3"))
    assert state() == (5, 5)
    again = [
        span(project_id, NOW, input={"messages": [{"role": "user", "content": f"walrus {n}"}]})
        for n in range(3)
    ]
    write(store, again)
    assert state() == (5, 8)
    assert found(store, project_id, "walrus") == {r["span_id"] for r in again}  # scanned above the mark
    assert index_all(store) == 3
    assert found(store, project_id, "walrus") == {r["span_id"] for r in again}
    same_as_the_scan(store, project_id)
    with store.session() as session:  # nothing stale: the index holds exactly the spans left
        assert session.scalar(_MATCH, {"match": match_expression("tea")}) == 2  # rowids 4 and 5 (n = 3, 4)
    with store.session() as session:
        session.execute(delete(Span))
    assert state() == (0, 0)


def test_the_search_plan_uses_the_index(store: Store) -> None:
    project_id = project(store)
    write(store, [span(project_id, NOW - timedelta(minutes=n), input=message(n)) for n in range(5)])
    index_all(store)
    query = TraceQuery(store)
    # Every project's spans (an admin's search): the text condition alone decides the plan.
    statement = select(Span.span_id).where(*query._conditions(None, TraceFilters(q="refund")))
    compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "spans_fts VIRTUAL TABLE INDEX" in plan, plan
        else:
            # On 5 rows the planner would read the table; the question is whether it can use the index.
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_indexscan = off")
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
            for index in ("ix_spans_input_trgm", "ix_spans_output_trgm"):
                # The day partitions' own copies of the index (migration 0022), named by PostgreSQL.
                parts = conn.exec_driver_sql(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    f"WHERE i.inhparent = '{index}'::regclass"
                ).scalars()
                assert any(f" {name} " in plan for name in [index, *parts]), plan
    # A term under three characters cannot use a trigram index: it is still answered, by a scan.
    assert found(store, project_id, "#3") == scanned(store, project_id, "#3") != set()


def test_the_background_indexer_catches_up_in_rounds(store: Store) -> None:
    project_id = project(store)
    write(store, [span(project_id, NOW - timedelta(seconds=n), input=message(n)) for n in range(450)])
    indexer = SearchIndexer(store)
    asyncio.run(indexer.run_round())
    if store.dialect == "sqlite":
        with store.session() as session:
            indexed = session.scalar(text("SELECT indexed_rowid FROM spans_fts_state"))
            newest = session.scalar(text("SELECT max(rowid) FROM spans"))
        assert indexed == newest  # 450 spans: three transactions of 200, one round
    assert index_pending(store) == 0
    same_as_the_scan(store, project_id)


def test_the_index_merges_its_segments_eight_at_a_time(tmp_path: Path) -> None:
    """Migration 0024: FTS5's automerge is 8, not its default 4 (a third less indexing CPU). SQLite
    only: pg_trgm keeps no segments."""
    store = Store(f"sqlite:///{tmp_path / 'fmops.db'}")
    upgrade(store)
    try:
        with store.engine.connect() as conn:
            config = dict(conn.execute(text("SELECT k, v FROM spans_fts_config")).all())
        assert config["automerge"] == 8
    finally:
        store.engine.dispose()


def test_a_span_holding_every_trigram_of_the_term_but_not_the_term_is_not_found(store: Store) -> None:
    """The index answers which spans hold each trigram, not where (migration 0025): LIKE keeps the
    answer the scan's."""
    project_id = project(store)
    scattered = span(project_id, NOW, input={"messages": [{"role": "user", "content": "ref efu fun und"}]})
    whole = span(project_id, NOW, input={"messages": [{"role": "user", "content": "a refund"}]})
    write(store, [scattered, whole])
    index_all(store)
    if store.dialect == "sqlite":
        with store.session() as session:  # both are candidates of the index
            assert session.scalar(_MATCH, {"match": match_expression("refund")}) == 2
    assert found(store, project_id, "refund") == {whole["span_id"]} == scanned(store, project_id, "refund")
    assert found(store, project_id, 'a "re') == set()  # a quote in the term is a character, not syntax


def test_the_migration_rebuilds_the_index_without_positions_and_back(tmp_path: Path) -> None:
    """Migration 0025 (SQLite; pg_trgm has no such index): the index is made again with
    `detail=none` and refilled by the background indexer; the search answers the same throughout."""
    store = Store(f"sqlite:///{tmp_path / 'fmops.db'}")
    try:
        upgrade(store, "0024")
        project_id = project(store)
        write(store, [span(project_id, NOW - timedelta(minutes=n), input=message(n)) for n in range(30)])
        index_all(store)
        before = {term: found(store, project_id, term) for term in TERMS}

        def definition() -> str:
            with store.session() as session:
                return str(session.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'spans_fts'")))

        assert "detail" not in definition()
        upgrade(store)
        assert "detail=none" in definition()
        with store.session() as session:
            assert session.scalar(text("SELECT indexed_rowid FROM spans_fts_state")) == 0
            assert session.scalar(text("SELECT v FROM spans_fts_config WHERE k = 'automerge'")) == 8
        assert {term: found(store, project_id, term) for term in TERMS} == before  # scanned meanwhile
        assert index_all(store) == 30
        assert {term: found(store, project_id, term) for term in TERMS} == before
        same_as_the_scan(store, project_id)

        with store.engine.connect() as conn:
            command.downgrade(_config(conn), "0024")
            conn.commit()
        assert "detail=full" in definition()  # FTS5's default, which 0012 left implicit
        assert index_all(store) == 30
        same_as_the_scan(store, project_id)
        with store.session() as session:
            phrase = text("SELECT count(*) FROM spans_fts WHERE spans_fts MATCH '\"refund\"'")
            assert session.scalar(phrase) == 6  # a phrase query: positions are back
    finally:
        store.engine.dispose()
