"""trace catch-alls and roll-up facets: bounded `_before` and `_after` partitions instead of the
DEFAULT one, and `stats_rollup_facets` (issue 19)

Both backends get `stats_rollup_facets`: the hourly roll-ups one dimension at a time (the whole
project, per model, per user; fmops.stats.rollup). At 10,000,000 spans a week's series merged
12,000 roll-up rows (1.6 s), and a breakdown by user over a day read every span of it (2.3 s).
Every hour rolled up so far is marked dirty, so the roll-up loop recomputes it with its facets;
until then such a range is read from the spans, as before.

The rest is PostgreSQL only. With a DEFAULT partition the planner cannot take the day
partitions in order (the default may hold any time), so a newest-first page merged an index scan
of every partition, and the free-text search could not stop at the newest days: at 10,000,000
spans the trigram search took 0.7 s, 0.47 s with the default partition detached
(benchmarks/trace_store_pg.py). Two bounded catch-alls keep every timestamp stored (fmops.store.
partitions): `spans_before` from MINVALUE to the first day, `spans_after` from the end of the last
day to MAXVALUE, the same for `span_tags`.

Upgrade: each default partition is detached, any day missing between the first and last day
partitions is made (0022 made one only for days with spans), the catch-alls attached, and the
default's rows inserted again, each into its day or a catch-all. Downgrade: the catch-alls
detached, a default partition made, and their rows inserted into it (the days made stay).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 13:40:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql

from fmops.store.partitions import (
    AFTER,
    AHEAD_DAYS,
    BEFORE,
    PARTITIONED,
    DayPartition,
    attach_catch_all,
    day_partitions,
    detach_catch_all,
)

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _partitioned(conn: Connection) -> bool:
    kind = conn.scalar(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('spans')"))
    return bool(kind == "p")


def _attach_day(conn: Connection, part: DayPartition) -> None:
    bounds = f"FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
    for table in PARTITIONED:
        name = part.name(table)
        conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}"))


def _json() -> Any:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _facets() -> None:
    op.create_table(
        "stats_rollup_facets",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("facet", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("latency_hist", _json(), nullable=False),
        sa.Column("ttft_count", sa.Integer(), nullable=False),
        sa.Column("ttft_hist", _json(), nullable=False),
        sa.Column("feedback", sa.Integer(), nullable=False),
        sa.Column("thumbs", sa.Integer(), nullable=False),
        sa.Column("thumbs_up", sa.Integer(), nullable=False),
        sa.Column("scores", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_rollup_facets")),
    )
    op.create_index(
        "ix_stats_rollup_facets_project_facet_hour", "stats_rollup_facets", ["project_id", "facet", "hour"]
    )
    # Rolled up without their facets: the loop rolls them again (the readers take spans meanwhile).
    op.execute("UPDATE stats_rollup_hours SET dirty = true WHERE dirty = false")


def upgrade() -> None:
    _facets()
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not _partitioned(conn):
        return
    for table in PARTITIONED:
        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {table}_default"))
        conn.execute(text(f"ALTER TABLE {table}_default RENAME TO {table}_default_old"))
    have = {p.day for p in day_partitions(conn)}
    today = datetime.now(UTC).date()
    first = min(have | {today})
    last = max(have | {today + timedelta(days=AHEAD_DAYS)})
    for n in range((last - first).days + 1):  # no gap between the days: each range has a partition
        day = first + timedelta(days=n)
        if day not in have:
            _attach_day(conn, DayPartition(day))
    attach_catch_all(conn, BEFORE, DayPartition(first).start)
    attach_catch_all(conn, AFTER, DayPartition(last).end)
    for table in PARTITIONED:
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {table}_default_old"))  # noqa: S608
        conn.execute(text(f"DROP TABLE {table}_default_old"))


def downgrade() -> None:
    op.drop_index("ix_stats_rollup_facets_project_facet_hour", table_name="stats_rollup_facets")
    op.drop_table("stats_rollup_facets")
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not _partitioned(conn):
        return
    detach_catch_all(conn, BEFORE)
    detach_catch_all(conn, AFTER)
    for table in PARTITIONED:
        conn.execute(text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
        for which in (BEFORE, AFTER):
            conn.execute(text(f"INSERT INTO {table} SELECT * FROM {table}_{which}"))  # noqa: S608
            conn.execute(text(f"DROP TABLE {table}_{which}"))
