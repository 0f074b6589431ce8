"""trace search: an index for the free-text trace search (`q`, a case-insensitive substring of a
span's input or output JSON), which otherwise reads every span of the project (issue 12)

SQLite: an FTS5 table with the trigram tokenizer over `spans.input` and `spans.output` (external
content: the index only, the text stays in `spans`). Indexing costs about 1 ms per 2 KB span, 50
times the insert itself, so it is kept off the write path: fmops.tracing.search_index indexes new
spans in the background (whoever wrote them: the trace writer, OTLP ingest, a bulk import), and
the search scans only the spans above its mark. Triggers keep indexed spans true when retention
deletes them or they are rewritten. A later migration that recreates `spans` on SQLite must drop
and recreate these (rowids change): clear spans_fts ('delete-all'), set the mark to 0, and the
background indexer rebuilds it. PostgreSQL: pg_trgm GIN indexes on `input::text` and
`output::text`, which ILIKE '%term%' uses directly, maintained by PostgreSQL's own process.
Terms under 3 characters cannot use a trigram index; they scan.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spans at or below spans_fts_state.indexed_rowid are in the index; fmops.tracing.search_index
# indexes the newer ones in the background, and the search scans those few (see the docstring).
SQLITE_UP = [
    "CREATE VIRTUAL TABLE spans_fts USING fts5("
    "input, output, content='spans', content_rowid='rowid', tokenize='trigram')",
    "CREATE TABLE spans_fts_state (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_rowid INTEGER NOT NULL)",
    "INSERT INTO spans_fts_state (id, indexed_rowid) VALUES (1, 0)",
    # Deleting or rewriting an indexed span keeps the index true (retention, an update).
    "CREATE TRIGGER spans_fts_delete AFTER DELETE ON spans "
    "WHEN old.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); END",
    "CREATE TRIGGER spans_fts_update AFTER UPDATE OF input, output ON spans "
    "WHEN old.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END",
    # SQLite gives a new row max(rowid) + 1: below the mark only after the newest spans were
    # deleted. Such a span is indexed at once, or the background indexer would never see it.
    "CREATE TRIGGER spans_fts_insert AFTER INSERT ON spans "
    "WHEN new.rowid <= (SELECT indexed_rowid FROM spans_fts_state) BEGIN "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS spans_fts_update",
    "DROP TRIGGER IF EXISTS spans_fts_delete",
    "DROP TRIGGER IF EXISTS spans_fts_insert",
    "DROP TABLE IF EXISTS spans_fts_state",
    "DROP TABLE IF EXISTS spans_fts",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_spans_input_trgm ON spans USING gin ((input::text) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_spans_output_trgm ON spans USING gin ((output::text) gin_trgm_ops)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_spans_output_trgm",
    "DROP INDEX IF EXISTS ix_spans_input_trgm",
]


def _run(statements: dict[str, list[str]]) -> None:
    for statement in statements.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN})
