"""The free-text search's index on SQLite, built in the background (migration 0012).

Trigram indexing costs about 1 ms per 2 KB span, 50 times the insert itself: on the write path it
would cap the trace writer near 1,000 spans/s. So spans are stored as fast as before, and
`SearchIndexer` indexes what is new every second, in small transactions (a writer waits at most
one of them). The search reads the index for spans up to the mark and scans the few above it
(`pending_condition`), so its answers never lag. PostgreSQL's pg_trgm indexes need none of this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import ColumnElement, literal_column, text

from fmops.periodic import Periodic
from fmops.store import Store
from fmops.tracing.writer import tune_sqlite_writes

log = logging.getLogger(__name__)

BATCH = 200  # spans per transaction to begin with: ~0.2 s at 2 KB each
# Later transactions are sized to take about TRANSACTION_SECONDS of CPU, the longest a trace batch
# waits for one: FTS5 writes each transaction's terms as one more segment and merges segments as
# they pile up, so small spans (~100 characters of input and output) indexed 200 at a time cost
# ~17 µs each, 2,000 at a time ~13 µs (with FTS5's default automerge of 4; migration 0024 sets 8,
# which took another third off).
TRANSACTION_SECONDS = 0.05
MIN_BATCH, MAX_BATCH = 20, 5000
ROUND_SECONDS = 0.5  # at most this long per round, so a backlog is caught up a slice at a time

_INDEX = text(
    "INSERT INTO spans_fts(rowid, input, output) SELECT rowid, input, output FROM spans "
    "WHERE rowid > (SELECT indexed_rowid FROM spans_fts_state) ORDER BY rowid LIMIT :batch"
)
_ADVANCE = text(
    "UPDATE spans_fts_state SET indexed_rowid = coalesce((SELECT max(rowid) FROM "
    "(SELECT rowid FROM spans WHERE rowid > indexed_rowid ORDER BY rowid LIMIT :batch)), indexed_rowid)"
)


def index_pending(store: Store, batch: int = BATCH) -> int:
    """Index up to `batch` spans above the mark, and move the mark past them; how many (SQLite)."""
    if store.dialect != "sqlite":
        return 0
    # BEGIN IMMEDIATE: a deferred transaction whose INSERT reads first fails at once with "database is
    # locked" when another writer got in between; an immediate one waits its turn.
    with store.write() as session:
        # Its commits checkpoint the WAL as the trace writer's do (at 10,000 pages, not 1,000).
        tune_sqlite_writes(session.connection())
        # The insert comes first: it takes the write lock, so no span can arrive between the two.
        result: Any = session.execute(_INDEX, {"batch": batch})
        session.execute(_ADVANCE, {"batch": batch})
    return int(result.rowcount or 0)


def index_all(store: Store) -> int:
    """Catch up completely (tests, benchmarks, a bulk import that wants its spans indexed now)."""
    total = 0
    while done := index_pending(store, batch=5000):
        total += done
    return total


TRIGRAM = 3  # trigram indexes (migration 0012) serve terms this long or longer; shorter ones scan


def match_expression(term: str) -> str:
    """The FTS5 query for spans that may hold `term` (at least TRIGRAM characters): each of its
    trigrams once, ANDed. The index keeps no positions (migration 0025), so it cannot answer the
    phrase itself; the caller's LIKE keeps only the spans that hold it."""
    if len(term) < TRIGRAM:
        raise ValueError(f"a term of fewer than {TRIGRAM} characters has no trigram")
    trigrams = dict.fromkeys(term[i : i + TRIGRAM] for i in range(len(term) - TRIGRAM + 1))
    return " AND ".join('"' + trigram.replace('"', '""') + '"' for trigram in trigrams)


def pending_condition() -> ColumnElement[bool]:
    """Spans the index does not hold yet: the search scans these."""
    return literal_column("spans.rowid") > text("(SELECT indexed_rowid FROM spans_fts_state)")


class SearchIndexer(Periodic):
    """Background service (SQLite): indexes new spans for the free-text search every interval."""

    task_name = "fmops-search-index"
    failure_message = "search index round failed"

    def __init__(self, store: Store, interval_seconds: float = 1.0) -> None:
        super().__init__(interval_seconds, wait_first=False)
        self.store = store
        self.batch = BATCH  # spans per transaction, sized by the last one's CPU time

    async def run_round(self) -> None:
        began = time.monotonic()
        total = 0
        while time.monotonic() - began < ROUND_SECONDS:
            batch = self.batch
            done, cpu = await asyncio.to_thread(_timed_index, self.store, batch)
            total += done
            if done < batch:
                break
            # Towards TRANSACTION_SECONDS: at most twice as many next time, as few as it takes.
            wanted = batch * TRANSACTION_SECONDS / max(cpu, 1e-4)
            self.batch = int(min(MAX_BATCH, batch * 2, max(MIN_BATCH, wanted)))
        if total:
            log.debug("spans indexed for search", extra={"spans": total, "batch": self.batch})


def _timed_index(store: Store, batch: int) -> tuple[int, float]:
    """index_pending, and the CPU time it took (not the wait for the write lock, nor for a core)."""
    started = time.thread_time()
    done = index_pending(store, batch)
    return done, time.thread_time() - started
