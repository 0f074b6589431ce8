"""Daily range partitions of the trace tables on PostgreSQL (migration 0022); SQLite has none.

`spans` and `span_tags` are partitioned by `start_time`, one partition per UTC day, named
`spans_p20261207` / `span_tags_p20261207`, plus a `_default` partition each, so that an insert
never fails for want of a partition (a span from long ago or far ahead, or a day not created yet).

- `ensure_ahead` creates today's partitions and those of the next `AHEAD_DAYS` (the retention
  scheduler calls it every round; the migration created the first ones). A day whose rows already
  sit in the default partition has them moved into its new partition in the same transaction.
- `drop_day` drops one day's partitions of both tables: what retention does instead of deleting
  rows, once every row of that day is past its project's retention (fmops.tracing.retention).

Partitions are attached (`ATTACH PARTITION`, a lock that lets reads and writes go on) rather than
created with `PARTITION OF` (which locks the whole table out). Dropping one takes the parent's
lock for a moment: it waits at most `LOCK_TIMEOUT` for running queries, else the next round retries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

PARTITIONED = ("spans", "span_tags")
AHEAD_DAYS = 3
LOCK_TIMEOUT = "2s"
_DAY_NAME = re.compile(r"^spans_p(\d{8})$")
# Alembic's model comparison skips these (fmops.store.migrate.modelled): they are the tables' parts.
PARTITION_NAME = re.compile(r"^(spans|span_tags)_(p\d{8}|default)$")
_LOCK_ID = 0x666D6F7073_03  # advisory lock: one process creates or drops partitions at a time


@dataclass(frozen=True)
class DayPartition:
    day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    def name(self, table: str = "spans") -> str:
        return f"{table}_p{self.day:%Y%m%d}"


def day_start(when: datetime) -> datetime:
    """The start of `when`'s UTC day: a partition boundary."""
    return datetime.combine(when.astimezone(UTC).date(), time(), tzinfo=UTC)


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.scalar(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('spans')"))
    return bool(kind == "p")


def day_partitions(conn: Connection) -> list[DayPartition]:
    """The day partitions of `spans`, oldest first (the default partition is not one)."""
    names = conn.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass('spans')"
        )
    )
    days = [datetime.strptime(m.group(1), "%Y%m%d").date() for n in names if (m := _DAY_NAME.match(n))]
    return [DayPartition(d) for d in sorted(days)]


def _bounds(part: DayPartition) -> str:
    # Literal timestamps (from a date, never from input): DDL cannot take bound parameters.
    return f"FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"


def create_day(conn: Connection, part: DayPartition) -> int:
    """Create one day's partitions of every trace table; rows of that day waiting in the default
    partitions move into them. How many spans moved."""
    moved = 0
    bounds = {"start": part.start, "end": part.end}
    for table in PARTITIONED:
        # Table names are ours (PARTITIONED and a date), never input; the bounds are bound.
        name, default = part.name(table), f"{table}_default"
        in_day = "start_time >= :start AND start_time < :end"
        conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
        # The default partition may not hold a row of the range being attached: move them first.
        copy = f"INSERT INTO {name} SELECT * FROM {default} WHERE {in_day}"  # noqa: S608
        count = conn.execute(text(copy), bounds).rowcount
        if count:
            conn.execute(text(f"DELETE FROM {default} WHERE {in_day}"), bounds)  # noqa: S608
        if table == "spans":
            moved = int(count or 0)
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {_bounds(part)}"))
    return moved


def ensure_ahead(conn: Connection, now: datetime, ahead: int = AHEAD_DAYS) -> list[DayPartition]:
    """Create the partitions of today and the next `ahead` days that are missing (in the caller's
    transaction); the ones created. A no-op on SQLite or an unpartitioned database."""
    if not is_partitioned(conn):
        return []
    today = now.astimezone(UTC).date()
    wanted = [DayPartition(today + timedelta(days=n)) for n in range(ahead + 1)]
    have = {p.day for p in day_partitions(conn)}
    missing = [p for p in wanted if p.day not in have]
    if not missing:
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    have = {p.day for p in day_partitions(conn)}  # another process may have made them meanwhile
    created = [p for p in missing if p.day not in have]
    for part in created:
        create_day(conn, part)
    return created


def has_rows_of(conn: Connection, part: DayPartition, project_ids: list[str]) -> bool:
    """Whether the day holds a span of one of these projects (an index probe per project)."""
    if not project_ids:
        return False
    found = conn.scalar(
        text(f"SELECT 1 FROM {part.name()} WHERE project_id = ANY(:ids) LIMIT 1"),  # noqa: S608
        {"ids": project_ids},
    )
    return found is not None


def count_rows(conn: Connection, part: DayPartition) -> int:
    return int(conn.scalar(text(f"SELECT count(*) FROM {part.name()}")) or 0)  # noqa: S608


def drop_day(conn: Connection, part: DayPartition) -> bool:
    """Drop one day's partitions of every trace table (in the caller's transaction). False when
    running queries held the table past `LOCK_TIMEOUT`: nothing dropped, retry later."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    try:
        with conn.begin_nested():
            for table in PARTITIONED:
                conn.execute(text(f"DROP TABLE IF EXISTS {part.name(table)}"))
    except OperationalError as exc:  # lock_not_available
        if getattr(exc.orig, "sqlstate", None) != "55P03":
            raise
        return False
    return True
