"""trace search: an index for the free-text trace search (`q`, a case-insensitive substring of a
span's input or output JSON), which otherwise reads every span of the project (issue 12)

SQLite: an FTS5 table with the trigram tokenizer over `spans.input` and `spans.output` (external
content: the index only, the text stays in `spans`), kept in sync by triggers, so every writer
(the trace writer, OTLP ingest, bulk imports, retention's deletes) keeps it current without
knowing it exists. PostgreSQL: pg_trgm GIN indexes on `input::text` and `output::text`, which
ILIKE '%term%' uses directly. Terms under 3 characters cannot use a trigram index; they scan.

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

SQLITE_UP = [
    "CREATE VIRTUAL TABLE spans_fts USING fts5("
    "input, output, content='spans', content_rowid='rowid', tokenize='trigram')",
    "INSERT INTO spans_fts(spans_fts) VALUES ('rebuild')",  # the spans already stored
    "CREATE TRIGGER spans_fts_insert AFTER INSERT ON spans BEGIN "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END",
    "CREATE TRIGGER spans_fts_delete AFTER DELETE ON spans BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); END",
    "CREATE TRIGGER spans_fts_update AFTER UPDATE OF input, output ON spans BEGIN "
    "INSERT INTO spans_fts(spans_fts, rowid, input, output) "
    "VALUES ('delete', old.rowid, old.input, old.output); "
    "INSERT INTO spans_fts(rowid, input, output) VALUES (new.rowid, new.input, new.output); END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS spans_fts_update",
    "DROP TRIGGER IF EXISTS spans_fts_delete",
    "DROP TRIGGER IF EXISTS spans_fts_insert",
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
