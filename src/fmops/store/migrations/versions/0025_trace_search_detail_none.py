"""trace search: the FTS5 index keeps which spans hold a trigram, not where (`detail=none`, SQLite)

The index is only a filter: the search keeps the spans that hold every trigram of the term, then
LIKE gives the exact answer (fmops.tracing.query). Trigram positions, which a phrase query needs,
made indexing ~12.6 µs a span where `detail=none` takes ~7.0 (short inputs and outputs, as in
benchmarks/otlp_ingest.py; transactions of 3,000, automerge 8), CPU that the background indexer
takes from span ingest on the same core. A phrase query is refused by such an index, so the
search asks for its term's trigrams ANDed instead (fmops.tracing.search_index.match_expression):
as fast at 300,000 spans (a rare term 0.6 ms a page, one in every span 170 ms against 240).

No trigger on insert any more. 0012's checked every inserted span against the mark, in case the
newest spans had been deleted and SQLite handed their rowids out again (at or below the mark, so
the indexer would never see them): ~1.2 µs of the ~12 µs SQLite takes to insert a span, 19 of
its 147 VM instructions. Now the delete trigger lowers the mark to the largest rowid left when a
delete leaves it above that, so a reused rowid is above the mark: scanned by the search, then
indexed in the background. Deletes, the rarer statement, pay the look-up of max(rowid).

Upgrade: the index is dropped and made again, empty, and its mark set to 0; the background indexer
fills it again (~7 µs a span, in rounds of at most half a second each second), and until then
the search scans what is not indexed yet, so its answers do not change. Automerge 8 as 0024 set
it. Downgrade: `detail=full` and 0012's three triggers again. PostgreSQL: nothing (pg_trgm).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-08 01:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTOMERGE = 8  # migration 0024's

# One statement after the other, in this order: an indexed span leaves the index, then the mark
# comes down to the largest rowid left if it was above it (the newest spans deleted).
DELETE_TRIGGER = (
    "CREATE TRIGGER spans_fts_delete AFTER DELETE ON spans BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "SELECT 'delete', old.rowid, old.input, old.output "
    "WHERE old.rowid <= (SELECT indexed_rowid FROM spans_fts_state); "
    "UPDATE spans_fts_state SET indexed_rowid = (SELECT coalesce(max(rowid), 0) FROM spans) "
    "WHERE indexed_rowid > (SELECT coalesce(max(rowid), 0) FROM spans); END"
)
UPDATE_TRIGGER = (
    "CREATE TRIGGER spans_fts_update AFTER UPDATE OF input, output ON spans "
    "WHEN old.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END"
)
# Migration 0012's, for the downgrade (a migration stays as it was written, so they are repeated).
TRIGGERS_0012 = [
    "CREATE TRIGGER spans_fts_delete AFTER DELETE ON spans "
    "WHEN old.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); END",
    UPDATE_TRIGGER,
    "CREATE TRIGGER spans_fts_insert AFTER INSERT ON spans "
    "WHEN new.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END",
]


def _remake(detail: str, triggers: list[str]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in ("spans_fts_update", "spans_fts_delete", "spans_fts_insert"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS spans_fts")
    op.execute(
        "CREATE VIRTUAL TABLE spans_fts USING fts5(input, output, content='spans', "
        f"content_rowid='rowid', tokenize='trigram', detail={detail})"
    )
    automerge = sa.text("INSERT INTO spans_fts(spans_fts, rank) VALUES ('automerge', :n)")
    op.execute(automerge.bindparams(n=AUTOMERGE))
    op.execute("UPDATE spans_fts_state SET indexed_rowid = 0")  # the background indexer refills it
    for statement in triggers:
        op.execute(statement)


def upgrade() -> None:
    _remake("none", [DELETE_TRIGGER, UPDATE_TRIGGER])


def downgrade() -> None:
    _remake("full", TRIGGERS_0012)
