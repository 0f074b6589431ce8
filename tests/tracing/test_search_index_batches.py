"""The background search indexer sizes its transactions by their CPU time (SQLite): small spans go in
bigger transactions, which FTS5 indexes for less per span, and the search still answers exactly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import String, cast, select, text

from fmops.store import Store, utcnow
from fmops.store.models import Project, Span
from fmops.tracing import TraceWriter
from fmops.tracing.query import TraceFilters, TraceQuery
from fmops.tracing.search_index import BATCH, MAX_BATCH, SearchIndexer, index_pending, match_expression
from support.stats_data import span

NOW = utcnow().replace(microsecond=0)


def test_small_spans_are_indexed_in_growing_transactions_and_found_exactly(store: Store) -> None:
    with store.session() as session:
        row = Project(name="batches", retention_days=30, created_at=NOW - timedelta(days=1))
        session.add(row)
    project_id = row.id
    rows = [
        span(project_id, NOW - timedelta(seconds=n), input={"q": f"walrus {n}" if n % 9 == 0 else "tea"})
        for n in range(1500)
    ]

    async def main() -> SearchIndexer:
        writer = TraceWriter(store)
        writer.record_many(rows)
        await writer.close()
        indexer = SearchIndexer(store)
        await indexer.run_round()
        return indexer

    indexer = asyncio.run(main())
    assert index_pending(store) == 0  # one round indexed them all
    if store.dialect == "sqlite":
        # 200 small spans take a few ms of CPU, far under the transaction's budget: the next
        # transactions held 400, then 800 (at most twice the last), and the next may hold 1,600.
        assert BATCH < indexer.batch <= MAX_BATCH
        with store.session() as session:
            match = text("SELECT count(*) FROM spans_fts WHERE spans_fts MATCH :match")
            indexed = session.scalar(match, {"match": match_expression("walrus")})
        assert indexed == 167
    page = TraceQuery(store).search(project_id, TraceFilters(q="walrus"), limit=500)
    with store.session() as session:
        scanned = set(
            session.scalars(
                select(Span.span_id).where(
                    Span.project_id == project_id, cast(Span.input, String).like("%walrus%")
                )
            )
        )
    assert {s.span_id for s in page.spans} == scanned
    assert len(scanned) == 167
