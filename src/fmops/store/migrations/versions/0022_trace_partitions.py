"""trace partitions: `spans` and `span_tags` range-partitioned by day on PostgreSQL (issue 19)

PostgreSQL only; SQLite is unchanged. Each table becomes a partitioned table with one partition
per UTC day of `start_time` (`spans_p20261207`) and a default partition, so retention drops a day
instead of deleting its rows (fmops.store.partitions, fmops.tracing.retention).

A partitioned table's primary key must hold the partition key: `spans` is keyed by (project_id,
span_id, start_time), `span_tags` by (project_id, span_id, tag, start_time). A replayed span (an
OTLP retry, the spool) carries the same start time, so it is still stored once. No other table has
a foreign key into these (scores, annotation items and datasets refer to traces by id, or copy).

Both backends also get an index on (project_id, session_id, start_time): the trace list's session
filter read every span of the project without it (benchmarks/trace_store_pg.py).

Existing rows are kept: the table is renamed, the new one created with the same columns, a
partition made for every day that has spans (and for today and the next days), the rows copied,
and the indexes (read from the old table, the trigram ones of 0012 included) built on the new one.
That reads and writes every span once: minutes per ten million spans, during which the server
must be down (as for any migration that rewrites a table).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 10:05:00
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from alembic import op
from sqlalchemy import Connection, text

from fmops.store.partitions import AHEAD_DAYS, DayPartition, create_day

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The primary keys, before (plain tables) and after (partitioned: the partition key added).
KEYS = {
    "spans": ("project_id, span_id", "project_id, span_id, start_time"),
    "span_tags": ("project_id, span_id, tag", "project_id, span_id, tag, start_time"),
}


def _index_definitions(conn: Connection, table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index of `table` but its primary key."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary ORDER BY c.relname"
        ),
        {"t": table},
    )
    return [(name, definition) for name, definition in rows]


def _replace(conn: Connection, table: str, *, partitioned: bool) -> list[str]:
    """Rename `table` away (its key and indexes dropped) and create the new one, empty, with the
    same columns; the CREATE INDEX statements to run once it is filled."""
    old = f"{table}_old"
    indexes = _index_definitions(conn, table)  # read before the rename: they name `table`
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT pk_{table}"))
    for name, _ in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    if partitioned:
        conn.execute(
            text(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (start_time)")
        )
        conn.execute(text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
    else:
        conn.execute(text(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)"))
    return [definition for _, definition in indexes]


def _fill(conn: Connection, table: str, indexes: list[str], *, partitioned: bool) -> None:
    """Copy the rows over, then build the key and indexes (one build per partition, not an
    update per row), and drop the old table."""
    old = f"{table}_old"
    conn.execute(text(f"INSERT INTO {table} SELECT * FROM {old}"))  # noqa: S608
    before, after = KEYS[table]
    key = after if partitioned else before
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})"))
    for definition in indexes:
        # A partitioned table's index reads back as ON ONLY (the parent alone): on the way down.
        conn.execute(text(definition.replace(" ON ONLY ", " ON ")))
    conn.execute(text(f"DROP TABLE {old} CASCADE"))  # CASCADE: the old partitions, on the way down


def _days_with_spans(conn: Connection) -> list[date]:
    rows = conn.scalars(text("SELECT DISTINCT (start_time AT TIME ZONE 'UTC')::date FROM spans"))
    today = datetime.now(UTC).date()
    ahead = {today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)}
    return sorted(set(rows) | ahead)


SESSION_INDEX = ("ix_spans_project_session_start", "spans", ["project_id", "session_id", "start_time"])


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        # A session's spans by index (the trace list's session filter read the whole project).
        op.create_index(*SESSION_INDEX)
        return
    days = _days_with_spans(conn)
    indexes = {table: _replace(conn, table, partitioned=True) for table in KEYS}
    for day in days:  # on the empty tables, so that each row is written once, into its day
        create_day(conn, DayPartition(day))
    for table in KEYS:
        _fill(conn, table, indexes[table], partitioned=True)
    op.create_index(*SESSION_INDEX)  # on the new table: built once, per partition


def downgrade() -> None:
    op.drop_index(SESSION_INDEX[0], table_name="spans")
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    indexes = {table: _replace(conn, table, partitioned=False) for table in KEYS}
    for table in KEYS:
        _fill(conn, table, indexes[table], partitioned=False)
