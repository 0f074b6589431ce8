"""The trace writer: batches, replays, spend, strict commits, subscribers, and the disk spool."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fmops.errors import Unavailable
from fmops.gateway.spend import record_spend
from fmops.store import Store, utcnow
from fmops.store.models import Span, Spend
from fmops.tracing import writer as writer_module
from fmops.tracing.spool import Spool
from fmops.tracing.writer import TraceWriter

_n = 0


def span(**extra: Any) -> dict[str, Any]:
    global _n
    _n += 1
    now = utcnow()
    return {
        "span_id": f"{os.getpid():08x}{_n:08x}",
        "trace_id": f"{_n:032x}",
        "project_id": "p1",
        "key_id": "k1",
        "name": "chat m",
        "kind": "llm",
        "start_time": now - timedelta(milliseconds=5),
        "end_time": now,
        "cost": 0.5,
        "input_tokens": 10,
        "output_tokens": 2,
        **extra,
    }


class Outage:
    """The store, with a switch that makes every session fail as an unreachable database does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dialect = store.dialect
        self.down = False

    @contextmanager
    def write(self) -> Iterator[Session]:
        if self.down:
            raise OperationalError("INSERT INTO spans", {}, ConnectionRefusedError("connection refused"))
        with self.store.write() as session:
            yield session


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def count(store: Store, *where: Any) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Span).where(*where)) or 0)


def project_spend(store: Store) -> float:
    with store.session() as session:
        return float(
            session.scalar(select(Spend.cost).where(Spend.scope == "project:p1", Spend.period == "total"))
            or 0
        )


def test_replayed_spans_are_stored_once_and_billed_once(store: Store) -> None:
    async def main() -> list[int]:
        seen: list[int] = []
        writer = TraceWriter(store, on_batch=record_spend)
        writer.subscribe(lambda rows: seen.append(len(rows)))
        writer.start()
        rows = [span() for _ in range(30)]
        writer.record_many([dict(r) for r in rows])
        await writer.flush()
        writer.record_many([dict(r) for r in rows[:10]] + [span()])  # a client retrying, plus one new span
        await writer.close()
        assert writer.written == 31
        assert writer.replayed == 10
        return seen

    seen = asyncio.run(main())
    assert count(store) == 31
    assert project_spend(store) == pytest.approx(31 * 0.5)
    assert sum(seen) == 31  # subscribers hear of new spans only: a replay is not evaluated twice


def test_two_projects_may_store_the_same_span_id_and_a_replay_is_still_dropped(store: Store) -> None:
    mine = span()
    theirs = {**mine, "project_id": "p2", "name": "theirs"}

    async def main() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        writer = TraceWriter(store, on_batch=record_spend)
        writer.subscribe(lambda rows: seen.extend((r["project_id"], r["span_id"]) for r in rows))
        writer.start()
        writer.record_many([dict(theirs)])
        await writer.flush()
        # Another project stored the id first; then one batch holds this project's span, its
        # replay, and a replay of the other project's: each project keeps its span, once.
        writer.record_many([dict(mine), dict(mine), dict(theirs)])
        await writer.close()
        assert writer.written == 2
        assert writer.replayed == 2
        return seen

    seen = asyncio.run(main())
    same_id = Span.span_id == mine["span_id"]
    with store.session() as session:
        rows = session.execute(select(Span.project_id, Span.name).where(same_id)).all()
    assert sorted(rows) == [("p1", "chat m"), ("p2", "theirs")]
    assert sorted(seen) == [("p1", mine["span_id"]), ("p2", mine["span_id"])]
    assert project_spend(store) == pytest.approx(0.5)  # this project's span billed once


def test_a_big_batch_with_replays_in_every_chunk_stores_and_bills_each_new_span_once(store: Store) -> None:
    # 1,100 rows in one batch: on SQLite, statements of 1,024, 64, 8 and 4 rows (a few fixed
    # sizes, kept compiled), each telling its new spans from its replays.
    async def main() -> list[str]:
        seen: list[str] = []
        writer = TraceWriter(store, on_batch=record_spend)
        writer.subscribe(lambda rows: seen.extend(r["span_id"] for r in rows))
        writer.start()
        first = [span() for _ in range(600)]
        writer.record_many([dict(r) for r in first])
        await writer.flush()
        fresh = [span() for _ in range(500)]
        mixed = [dict(r) for pair in zip(first[:500], fresh, strict=True) for r in pair]
        writer.record_many(mixed + [dict(r) for r in first[500:]])
        await writer.close()
        assert writer.written == 1100
        assert writer.replayed == 600
        return seen

    seen = asyncio.run(main())
    assert count(store) == 1100
    assert len(seen) == len(set(seen)) == 1100  # every new span told once, no replay
    assert project_spend(store) == pytest.approx(1100 * 0.5)


def test_a_connection_that_writes_spans_on_sqlite_gets_a_bigger_cache_and_rarer_checkpoints(
    store: Store,
) -> None:
    if store.dialect != "sqlite":
        pytest.skip("not applicable: SQLite pragmas; PostgreSQL has no equivalent")
    with store.write() as session:
        conn = session.connection()
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000  # SQLite's default
        writer_module.tune_sqlite_writes(conn)
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -64 * 1024  # KiB
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        writer_module._SqliteInsert()(session, [span()])  # the span insert tunes its connection too
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Span)) == 1


def test_ingested_spans_are_not_spend(store: Store) -> None:
    async def main() -> None:
        writer = TraceWriter(store, on_batch=record_spend)
        writer.start()
        writer.record_many([span(), span()], ingested=True)
        writer.record(span())
        await writer.close()

    asyncio.run(main())
    assert count(store) == 3
    assert project_spend(store) == pytest.approx(0.5)


def test_a_calls_parts_are_stored_but_neither_counted_nor_billed(store: Store) -> None:
    """A guardrail's decisions are spans of the call, not calls: no `on_record` (the call metrics),
    no request in `spend`."""
    observed: list[str] = []

    async def main() -> None:
        writer = TraceWriter(store, on_batch=record_spend, on_record=lambda row: observed.append(row["kind"]))
        writer.start()
        writer.record(span())
        part = {"kind": "guardrail", "cost": None, "input_tokens": None, "output_tokens": None}
        writer.record_parts([span(**part), span(**part)])
        await writer.close()

    asyncio.run(main())
    assert count(store) == 3
    assert observed == ["llm"]
    with store.session() as session:
        requests = session.scalar(
            select(Spend.requests).where(Spend.scope == "project:p1", Spend.period == "total")
        )
    assert requests == 1
    assert project_spend(store) == pytest.approx(0.5)


def test_a_refused_span_does_not_block_its_batch(store: Store) -> None:
    async def main() -> TraceWriter:
        writer = TraceWriter(store)
        writer.start()
        writer.record_many([span(), span(project_id=None), span()])  # project_id is NOT NULL
        await writer.close()
        return writer

    writer = asyncio.run(main())
    assert (writer.written, writer.rejected) == (2, 1)
    assert count(store) == 2


def test_long_strings_are_cut_to_their_column(store: Store) -> None:
    async def main() -> None:
        writer = TraceWriter(store)
        writer.start()
        writer.record(span(name="n" * 5000, model="m" * 500))
        await writer.close()

    asyncio.run(main())
    with store.session() as session:
        stored = session.scalars(select(Span)).one()
    assert (len(stored.name), len(stored.model or "")) == (200, 100)


def test_every_column_type_is_stored_as_given(store: Store) -> None:
    # Each backend binds values its own way (SQLite: converted row by row; PostgreSQL: one array
    # per column): what comes back through the ORM must be what was recorded, JSON nulls included.
    given = span(
        cache_hit=True,
        prompt_version=3,
        ttft_ms=12.5,
        input=None,
        output={"text": ["é", 1, None]},
        attributes={"k": "v", "n": 2},
        status_message="x" * 3000,
    )
    bare = span()

    async def main() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        writer = TraceWriter(store)
        writer.subscribe(lambda rows: seen.extend(rows))
        writer.start()
        writer.record_many([given, bare, dict(given)], ingested=True)  # the copy is a replay in-batch
        await writer.close()
        return seen

    seen = asyncio.run(main())
    assert [row["span_id"] for row in seen] == [given["span_id"], bare["span_id"]]
    with store.session() as session:
        stored = {s.span_id: s for s in session.scalars(select(Span))}
        nulls = session.execute(select(Span.span_id, Span.input.is_(None))).all()
    row = stored[given["span_id"]]
    assert (row.cache_hit, row.prompt_version, row.ttft_ms, row.cost) == (True, 3, 12.5, 0.5)
    assert (row.input, row.output, row.attributes) == (None, {"text": ["é", 1, None]}, {"k": "v", "n": 2})
    assert row.start_time == given["start_time"]
    assert row.status_message == "x" * 3000
    assert stored[bare["span_id"]].attributes == {}  # none given: the column's default
    assert not any(is_null for _, is_null in nulls)  # None input is JSON null, as SQLAlchemy stores it


def test_commit_returns_once_the_spans_are_stored(store: Store) -> None:
    async def main() -> None:
        writer = TraceWriter(store, flush_seconds=5.0)  # the timer alone would wait 5 s
        writer.start()
        rows = [span() for _ in range(3)]
        await asyncio.wait_for(writer.commit(rows), timeout=3)
        assert count(store, Span.span_id.in_([r["span_id"] for r in rows])) == 3
        await writer.close()

    asyncio.run(main())


def test_strict_admission_refuses_before_the_work_while_the_database_is_away(store: Store) -> None:
    async def main() -> None:
        outage = Outage(store)
        writer = TraceWriter(outage, flush_seconds=0.01, max_memory=100)  # type: ignore[arg-type]
        writer.start()
        writer.admit()  # healthy: a strict call may go ahead
        with pytest.raises(Unavailable) as full:
            writer.admit(101)  # more than the queue holds
        assert full.value.retry_after == 1
        outage.down = True
        writer.record(span())
        assert await _until(lambda: not writer.healthy)
        with pytest.raises(Unavailable) as away:
            writer.admit()
        assert away.value.retry_after == 5
        assert "the call was not made" in away.value.message
        assert writer.not_admitted == 2
        outage.down = False
        assert await _until(lambda: writer.healthy)
        writer.admit()
        await writer.close()

    asyncio.run(main())
    assert count(store) == 1


def test_strict_admission_refuses_while_a_write_is_stuck(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "STALL_SECONDS", 0.2)

    class Stuck(Outage):
        @contextmanager
        def write(self) -> Iterator[Session]:
            while self.down:  # as a locked SQLite or a silent network holds a write
                time.sleep(0.01)
            with self.store.write() as session:
                yield session

    async def main() -> None:
        stuck = Stuck(store)
        stuck.down = True
        writer = TraceWriter(stuck, flush_seconds=0.01)  # type: ignore[arg-type]
        writer.start()
        writer.record(span())
        await asyncio.sleep(0.4)
        with pytest.raises(Unavailable, match="not answering"):
            writer.admit()
        stuck.down = False
        assert await _until(lambda: writer.pending == 0)
        writer.admit()
        await writer.close()

    asyncio.run(main())
    assert count(store) == 1


def test_a_commit_past_its_deadline_keeps_the_span_and_its_spend_in_the_spool(
    store: Store, tmp_path: Path
) -> None:
    """The database goes away after a strict call was admitted: the caller gets 503 + Retry-After
    within its deadline, the span is already on disk (fsync'd), and once the database is back it is
    stored and billed exactly once (it was both queued and spooled)."""
    spool = tmp_path / "spool"
    row = span()

    async def main() -> None:
        outage = Outage(store)
        writer = TraceWriter(outage, flush_seconds=0.01, spool_dir=spool, on_batch=record_spend)  # type: ignore[arg-type]
        writer.start()
        writer.admit()
        outage.down = True  # the outage starts while the upstream answers
        started = time.monotonic()
        with pytest.raises(Unavailable) as late:
            await writer.commit([row], timeout=0.6)
        assert 0.5 < time.monotonic() - started < 2.0
        assert late.value.retry_after == 5
        assert "kept on disk" in late.value.message
        on_disk = [
            orjson.loads(line) for chunk in spool.iterdir() for line in chunk.read_bytes().splitlines()
        ]
        assert [r["span_id"] for r in on_disk] == [row["span_id"]]  # a kill now would not lose it
        assert writer.spooled_strict == 1
        outage.down = False
        assert await _until(lambda: writer.pending == 0)
        await writer.close()

    asyncio.run(main())
    assert count(store, Span.span_id == row["span_id"]) == 1
    assert project_spend(store) == pytest.approx(0.5)
    assert not list(spool.iterdir())


def test_a_cancelled_commit_spools_its_span_before_it_unwinds(store: Store, tmp_path: Path) -> None:
    """A client that hangs up while its strict call commits: the span is kept all the same."""
    spool = tmp_path / "spool"
    row = span()

    async def main() -> None:
        outage = Outage(store)
        writer = TraceWriter(outage, flush_seconds=0.01, spool_dir=spool)  # type: ignore[arg-type]
        writer.start()
        outage.down = True
        task = asyncio.create_task(writer.commit([row], timeout=30))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sum(len(chunk.read_bytes().splitlines()) for chunk in spool.iterdir()) == 1
        outage.down = False
        assert await _until(lambda: writer.pending == 0)
        await writer.close()

    asyncio.run(main())
    assert count(store, Span.span_id == row["span_id"]) == 1


def test_strict_spool_writes_are_fsynced_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = Spool(tmp_path / "spool", 10**6)
    assert spool.append(span())  # buffered: no fsync
    assert synced == []
    assert spool.append(span(), sync=True)
    chunk = str(next((tmp_path / "spool").iterdir()))
    assert synced == [chunk, str(tmp_path / "spool"), str(tmp_path)]
    assert spool.append(span(), sync=True)  # the directory entries are on disk already
    assert synced[3:] == [chunk]


def test_an_ingested_span_that_went_through_the_spool_is_still_not_spend(
    store: Store, tmp_path: Path
) -> None:
    async def main() -> None:
        outage = Outage(store)
        writer = TraceWriter(  # type: ignore[arg-type]
            outage, max_memory=100, spool_dir=tmp_path / "spool", flush_seconds=0.01, on_batch=record_spend
        )
        writer.start()
        outage.down = True
        writer.record_many([span() for _ in range(150)], ingested=True)
        assert writer.spooled == 50
        outage.down = False
        assert await _until(lambda: writer.pending == 0)
        await writer.close()

    asyncio.run(main())
    assert count(store) == 150
    assert project_spend(store) == 0


def test_an_outage_spools_to_disk_within_the_memory_bound_and_loses_nothing(
    store: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"

    async def main() -> None:
        outage = Outage(store)
        writer = TraceWriter(outage, max_memory=100, batch_size=50, spool_dir=spool, flush_seconds=0.01)  # type: ignore[arg-type]
        writer.start()
        outage.down = True
        for _ in range(1_000):
            writer.record(span())
        assert len(writer._queue) <= 100  # memory stays bounded
        assert writer.spooled == 900
        assert len(list(spool.iterdir())) == 9  # chunks as big as the memory bound
        outage.down = False
        for _ in range(500):
            await asyncio.sleep(0.02)
            if writer.pending == 0:
                break
        assert writer.pending == 0
        await writer.close()
        assert writer.dropped == 0

    asyncio.run(main())
    assert count(store) == 1_000
    assert not list(spool.iterdir())


def test_past_the_spool_budget_spans_are_dropped_and_counted(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"

    async def main() -> TraceWriter:
        outage = Outage(store)
        writer = TraceWriter(outage, max_memory=100, spool_dir=spool, spool_bytes=20_000)  # type: ignore[arg-type]
        outage.down = True
        for _ in range(300):
            writer.record(span())
        return writer

    writer = asyncio.run(main())
    assert writer.dropped > 0
    assert writer.spooled + len(writer._queue) + writer.dropped == 300
    assert sum(p.stat().st_size for p in spool.iterdir()) <= 20_000


def test_spans_spooled_by_a_killed_process_are_written_by_the_next(store: Store, tmp_path: Path) -> None:
    # A process that is gone left one sealed chunk, one it was writing (its last line cut short by
    # the kill) and one whose spans it had taken back but not committed.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    spool = tmp_path / "spool"
    spool.mkdir()
    rows = [span() for _ in range(6)]
    lines = [orjson.dumps(r, default=str) + b"\n" for r in rows]
    (spool / f"{pid}-1.ready").write_bytes(b"".join(lines[:2]))
    (spool / f"{pid}-2.open").write_bytes(b"".join(lines[2:4]) + lines[4][:20])
    (spool / f"{pid}-3.taken").write_bytes(lines[5] + lines[0])  # one already committed: a replay

    async def main() -> TraceWriter:
        writer = TraceWriter(store, spool_dir=spool)
        writer.start()
        for _ in range(300):
            await asyncio.sleep(0.02)
            if writer.pending == 0:
                break
        await writer.close()
        return writer

    writer = asyncio.run(main())
    stored = count(store, Span.span_id.in_([r["span_id"] for r in rows]))
    assert stored == 5  # all but the line the kill cut short
    assert writer.written == 5
    assert not list(spool.iterdir())


def test_missing_values_are_stored_as_null_and_a_nan_cost_too(store: Store) -> None:
    """The SQLite insert binds NaN for None (cheaper than None through the sqlite3 module): what is
    stored and read back is NULL on both backends, never NaN or the text 'nan'."""
    row = span()
    row.update(cost=None, ttft_ms=None, status_message=None, endpoint=None, prompt_version=None)
    odd = span()
    odd["cost"] = float("nan")  # a provider's NaN: NULL on SQLite; PostgreSQL keeps NaN as a value

    async def main() -> None:
        writer = TraceWriter(store)
        writer.start()
        writer.record_many([row, odd], ingested=True)
        await writer.close()

    asyncio.run(main())
    with store.session() as session:
        stored = session.get(Span, (row["project_id"], row["span_id"]))
        assert stored is not None
        missing = (stored.cost, stored.ttft_ms, stored.status_message, stored.endpoint, stored.prompt_version)
        assert missing == (None, None, None, None, None)
        nulls = select(func.count()).select_from(Span).where(Span.cost.is_(None), Span.endpoint.is_(None))
        assert session.scalar(nulls) == (2 if store.dialect == "sqlite" else 1)
