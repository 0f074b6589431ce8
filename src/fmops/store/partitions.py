"""Daily range partitions of the trace tables on PostgreSQL (migrations 0022, 0023); SQLite has none.

`spans` and `span_tags` are partitioned by `start_time`, one partition per UTC day, named
`spans_p20261207` / `span_tags_p20261207`, with no gap between them, and two bounded catch-alls
(migration 0023): `_before`, from MINVALUE to the first day, and `_after`, from the end of the last
day to MAXVALUE. Every timestamp has a partition, so an insert never fails for want of one (a span
from long ago or far ahead lands in a catch-all and is kept). Unlike a DEFAULT partition (0022),
bounded ones keep the partitions ordered: a newest-first query with a LIMIT reads the newest days
and stops, where with a default one PostgreSQL had to merge every partition's index.

- `ensure_ahead` creates today's partitions and those of the next `AHEAD_DAYS` (the retention
  scheduler calls it every round), and any day between the last one and them. `create_day` makes
  any day: the catch-all covering it is detached, the days between it and the existing ones made,
  the catch-all's rows of those days moved into them, and the catch-all attached again, narrowed.
- `drop_day` empties one day of both tables: what retention does instead of deleting rows, once
  every row of that day is past its project's retention (fmops.tracing.retention). The first day
  is dropped and `_before` widened over it; a later one is truncated (a dropped day there would
  leave a range no partition takes), and dropped once it is the first (never the last day left:
  the catch-alls meet there).

Detaching a catch-all or dropping a day takes the parent's lock for a moment: it waits at most
`LOCK_TIMEOUT` for running queries (else the next round retries), and inserts wait for it, never
fail. A database still at 0022 (a `_default` partition) keeps 0022's behaviour until upgraded.
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
PARTITION_NAME = re.compile(r"^(spans|span_tags)_(p\d{8}|default|before|after)$")
BEFORE, AFTER = "before", "after"  # the catch-alls: `spans_before`, `spans_after`
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


def _exists(conn: Connection, name: str) -> bool:
    return conn.scalar(text("SELECT to_regclass(:n)"), {"n": name}) is not None


def has_catch_alls(conn: Connection) -> bool:
    """Whether the tables have 0023's bounded catch-alls (else 0022's default partition)."""
    return _exists(conn, f"spans_{BEFORE}")


def _attach_day(conn: Connection, part: DayPartition) -> None:
    """A day's empty partitions, attached (every index of the parent is built on them, empty)."""
    for table in PARTITIONED:
        name = part.name(table)
        conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {_bounds(part)}"))


def attach_catch_all(conn: Connection, which: str, bound: datetime) -> None:
    """Attach `_before` up to `bound` or `_after` from `bound` (each table's; created if absent)."""
    edge = f"'{bound.isoformat()}'"  # from a date, never from input
    values = f"FROM (MINVALUE) TO ({edge})" if which == BEFORE else f"FROM ({edge}) TO (MAXVALUE)"
    for table in PARTITIONED:
        name = f"{table}_{which}"
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING DEFAULTS)"))
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {values}"))


def detach_catch_all(conn: Connection, which: str) -> None:
    for table in PARTITIONED:
        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {table}_{which}"))


def _move_back(conn: Connection, which: str, low: datetime, high: datetime) -> int:
    """Rows of the detached catch-all within [low, high) go into the parent (their day partitions
    now); how many spans moved."""
    moved = 0
    bounds = {"low": low, "high": high}
    for table in PARTITIONED:
        name, within = f"{table}_{which}", "start_time >= :low AND start_time < :high"
        count = conn.execute(text(f"INSERT INTO {table} SELECT * FROM {name} WHERE {within}"), bounds)  # noqa: S608
        if count.rowcount:
            conn.execute(text(f"DELETE FROM {name} WHERE {within}"), bounds)  # noqa: S608
        if table == "spans":
            moved = int(count.rowcount or 0)
    return moved


def _lock(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def create_day(conn: Connection, part: DayPartition) -> int:
    """Create one day's partitions of every trace table (and, with the catch-alls, every day
    between it and the existing ones, so none is missing); rows of those days waiting in a
    catch-all (or 0022's default partition) move into them. How many spans moved."""
    if not has_catch_alls(conn):
        return _create_day_beside_default(conn, part)
    _lock(conn)
    return _create_days(conn, [part])[1]


def _create_days(conn: Connection, wanted: list[DayPartition]) -> tuple[list[DayPartition], int]:
    """The missing days of `wanted` and those between them and the existing days (the caller
    holds the lock): the ones created, and the spans moved out of the catch-alls."""
    have = {p.day for p in day_partitions(conn)}
    missing = sorted({p.day for p in wanted} - have)
    if not missing:
        return [], 0
    if not have:  # drop_day never drops the last day: the catch-alls' shared bound is unknown
        raise RuntimeError("the trace tables have catch-all partitions but no day partition")
    first, last = min(have), max(have)
    created: list[DayPartition] = []
    moved = 0
    if missing[0] < first:  # days before the first: out of `_before`, which ends at the new first
        detach_catch_all(conn, BEFORE)
        days = [missing[0] + timedelta(days=n) for n in range((first - missing[0]).days)]
        for day in days:
            _attach_day(conn, DayPartition(day))
        low = DayPartition(days[0]).start
        moved += _move_back(conn, BEFORE, low, DayPartition(first).start)
        attach_catch_all(conn, BEFORE, low)
        created += [DayPartition(d) for d in days]
    if missing[-1] > last:  # days after the last: out of `_after`, which starts after the new last
        detach_catch_all(conn, AFTER)
        days = [last + timedelta(days=n) for n in range(1, (missing[-1] - last).days + 1)]
        for day in days:
            _attach_day(conn, DayPartition(day))
        high = DayPartition(days[-1]).end
        moved += _move_back(conn, AFTER, DayPartition(last).end, high)
        attach_catch_all(conn, AFTER, high)
        created += [DayPartition(d) for d in days]
    for day in missing:  # a gap between days (none normally): no partition holds its range
        if first < day < last and day not in have:
            _attach_day(conn, DayPartition(day))
            created.append(DayPartition(day))
    return sorted(created, key=lambda p: p.day), moved


def _create_day_beside_default(conn: Connection, part: DayPartition) -> int:
    """0022's way (a default partition; migration 0022 runs it): the day's rows move out of it."""
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
    """Create the partitions of today and the next `ahead` days that are missing, and any day
    between the last one and them (in the caller's transaction); the ones created. A no-op on
    SQLite or an unpartitioned database. Raises OperationalError (lock_not_available) when running
    queries held the tables past LOCK_TIMEOUT; the caller retries next round."""
    if not is_partitioned(conn):
        return []
    today = now.astimezone(UTC).date()
    wanted = [DayPartition(today + timedelta(days=n)) for n in range(ahead + 1)]
    have = {p.day for p in day_partitions(conn)}
    if all(p.day in have for p in wanted):
        return []
    if not has_catch_alls(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        have = {p.day for p in day_partitions(conn)}  # another process may have made them meanwhile
        created = [p for p in wanted if p.day not in have]
        for part in created:
            _create_day_beside_default(conn, part)
        return created
    _lock(conn)
    return _create_days(conn, wanted)[0]


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
    """Drop one day's rows of every trace table (in the caller's transaction): the first day's
    partitions are dropped and `_before` widened over its range, a later day's truncated (see the
    module docstring). False when running queries held the tables past `LOCK_TIMEOUT`: nothing
    dropped, retry later."""
    _lock(conn)
    try:
        with conn.begin_nested():
            days = day_partitions(conn)
            if not has_catch_alls(conn):
                for table in PARTITIONED:
                    conn.execute(text(f"DROP TABLE IF EXISTS {part.name(table)}"))
            elif len(days) > 1 and days[0] == part:  # the last day stays: the catch-alls meet there
                detach_catch_all(conn, BEFORE)
                for table in PARTITIONED:
                    conn.execute(text(f"DROP TABLE {part.name(table)}"))
                attach_catch_all(conn, BEFORE, part.end)
            elif part in days:
                for table in PARTITIONED:
                    conn.execute(text(f"TRUNCATE {part.name(table)}"))
    except OperationalError as exc:  # lock_not_available
        if getattr(exc.orig, "sqlstate", None) != "55P03":
            raise
        return False
    return True
