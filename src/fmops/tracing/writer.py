"""Writes spans off the request path: callers enqueue, a background task inserts in batches.

`record()` never blocks and never raises. Batches go to the database from a thread, every
`flush_seconds` or as soon as `batch_size` spans wait. Inserts are `ON CONFLICT DO NOTHING` on the
span id, so a replayed span (an OTLP client retrying a batch) is stored once, and billed once.

While the database is unreachable, a batch that fails stays queued and is retried with backoff;
past `max_memory` queued spans, new ones go to the disk spool (`spool.py`) instead of memory, and
come back once the queue drains. Only past the spool's byte budget are spans dropped, and counted.
What buffered mode can lose is what is in memory when the process dies: the spans of the last
`flush_seconds` (~50 ms), or during an outage up to `max_memory` spans (the spool itself is kept).

Strict durability (`FMOPS_TRACE_DURABILITY=strict`) is two calls:

- `admit()`, before a caller does anything it would have to record (a gateway call pays its
  upstream; an OTLP batch is accepted): refuses (503, Retry-After) unless the database answered the
  last write, no write has been stuck for `STALL_SECONDS`, and the queue and spool have room;
- `commit()`, after: resolves once the spans (and, in the same transaction, their spend) are
  committed. Past its deadline, or if the caller is cancelled (a client hung up), the spans are
  appended to the spool and fsync'd (file and directory) before it returns or raises: they are kept
  on disk and written by this process when the database answers again, or adopted by the next
  start. A deadline so met raises `Unavailable` (503, Retry-After): the caller must not answer 2xx.

So in strict mode a span is lost only if the process dies between the caller's work (the upstream's
answer) and the commit or spool write, a window in which the caller has not been answered either.

A span row may carry `tags` (validated by its maker, fmops.tracing.tags): they are written to
`span_tags` in the span's own transaction, for the spans the batch newly stored (a replay adds none).
An untagged batch costs one dict look-up per span.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Float, Integer, String, insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from fmops.errors import Unavailable
from fmops.store import Store
from fmops.store.engine import json_dumps
from fmops.store.models import Span, SpanTag
from fmops.store.types import UTCDateTime
from fmops.tracing.spool import CHUNK_SPANS, INGESTED, SPOOL_MARK, Spool
from fmops.tracing.tags import MAX_TAG_LENGTH

log = logging.getLogger(__name__)
# Extra work done in the same transaction as a batch of spans (e.g. spend accounting).
BatchHook = Callable[[Session, Sequence[dict[str, Any]]], None]
# Called with each span as it is recorded, on the request path (e.g. Prometheus metrics): keep it cheap.
RecordHook = Callable[[dict[str, Any]], None]
# Called on the event loop with each committed batch (exporters, online evaluators): must not block.
Subscriber = Callable[[Sequence[dict[str, Any]]], None]

# Private marks on queued rows, removed before insert (INGESTED, from spool.py, is kept in the
# spool: an application's span, not a gateway call, so never spend).
_WAITER = "_fmops_waiter"
# Strict commits wait at most this long (or the caller's own deadline, if sooner), at least the floor.
COMMIT_SECONDS = 5.0
FLUSH_SECONDS = 0.05  # how long a span waits for its batch, by default
MIN_COMMIT_SECONDS = 0.5
# A database write in flight longer than this: strict admission refuses until it ends.
STALL_SECONDS = 2.0

_TABLE = Span.__table__
_DEFAULTS: dict[str, Any] = {c.name: None for c in _TABLE.columns}
_DEFAULTS.update(kind="span", status="ok", cache_hit=False, attributes={})
# A span's key: its id is unique within its project only (two projects may send the same id).
SpanKey = tuple[str, str]


def _key(row: dict[str, Any]) -> SpanKey:
    return (row.get("project_id"), row.get("span_id"))  # type: ignore[return-value]


def _first_copies(
    rows: Sequence[dict[str, Any]], inserted: set[SpanKey], *, all_new: bool = False
) -> Sequence[dict[str, Any]]:
    """The rows newly stored: a span twice in one batch was stored once, from its first copy.

    `all_new`: the batch these rows come from stored as many spans as it held, so every row is new
    and no two are alike (the common case, then free)."""
    if all_new:
        return rows
    new = set(inserted)
    out = []
    for row in rows:
        if (key := _key(row)) in new:
            new.remove(key)
            out.append(row)
    return out


class _Waiter:
    """Resolves when all `remaining` spans of one `commit()` are settled: with None when all are
    committed, else with the first reason one was not (refused by the database, or spooled)."""

    __slots__ = ("error", "future", "remaining")

    def __init__(self, future: asyncio.Future[str | None], remaining: int) -> None:
        self.future = future
        self.remaining = remaining
        self.error: str | None = None

    def done_one(self, error: str | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(self.error)


# A strict span that went to the spool (fsync'd) instead of the database: kept, not yet committed.
_SPOOLED = "spooled"


# Under load, bigger commits share the index pages they dirty (random span, trace, user and
# session keys). On SQLite 2,000 gave ~20% more spans/s than 500, and 5,000 with the 64 MB cache
# (tune_sqlite_writes) makes ~24% fewer page writes than 2,000 with 16 MB (120,000 spans in
# process: 5.1 pwrites a span against 6.7); with migration 0025, 10-22% more spans/s stored in
# three interleaved pairs (benchmarks/otlp_ingest.py, results/otlp_ingest_steps.json, step 5).
# PostgreSQL showed no gain from 5,000 and keeps 2,000.
SQLITE_BATCH = 5000
POSTGRES_BATCH = 2000


class TraceWriter:
    def __init__(
        self,
        store: Store,
        *,
        # Spans per transaction; None: SQLITE_BATCH or POSTGRES_BATCH, by the store's dialect.
        batch_size: int | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        max_memory: int = 20_000,
        spool_dir: Path | None = None,
        spool_bytes: int = 2 * 1024**3,
        on_batch: BatchHook | None = None,
        on_record: RecordHook | None = None,
        on_stored: BatchHook | None = None,
        commit_seconds: float = COMMIT_SECONDS,
    ) -> None:
        self.store = store
        self.commit_seconds = commit_seconds
        if batch_size is None:
            batch_size = SQLITE_BATCH if store.dialect == "sqlite" else POSTGRES_BATCH
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_memory = max_memory
        # At least a batch and a half: the batch in flight stays queued until it is written, and
        # ingest reads part of the next one meanwhile, no more than is written in well under 1 s.
        self.ingest_backlog = max(min(max(5_000, batch_size * 3 // 2), max_memory // 2), 1)
        self.on_batch = on_batch
        self.on_record = on_record
        # Stats roll-ups: every stored batch, gateway and ingested spans alike (fmops.stats.rollup).
        self.on_stored = on_stored
        # Chunks no bigger than the memory bound, so taking one back never exceeds it by much.
        chunk = min(CHUNK_SPANS, max_memory)
        self.spool = Spool(spool_dir, spool_bytes, chunk) if spool_dir is not None else None
        self._sqlite_insert = _SqliteInsert() if store.dialect == "sqlite" else None
        self._postgres_insert = _PostgresInsert()
        self._queue: deque[dict[str, Any]] = deque()
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set after each written batch: ingest waiting for room
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self.rejected = 0
        self.replayed = 0  # spans whose id was already stored
        self.not_admitted = 0  # strict calls refused before their work, by admit()
        self.spooled_strict = 0  # strict spans fsync'd to the spool because the commit could not wait
        self._writing_since = 0.0  # when the database write in flight began (0: none)
        self.healthy = True  # the last write attempt reached the database

    @property
    def pending(self) -> int:
        return len(self._queue) + (self.spool.pending if self.spool else 0)

    @property
    def backlogged(self) -> bool:
        """More is waiting than the store writes in about a second: ingest should push back."""
        return len(self._queue) >= self.ingest_backlog or self.spooled > 0

    async def room(self, timeout: float) -> bool:
        """Wait, up to `timeout` seconds, until the queue is below the backlog mark: whether it is.

        Ingest waits here before reading a batch, rather than refusing it at once: a client answered
        503 at once resends at once, and the refusals themselves took a tenth of a saturated core. A
        held request is backpressure that costs nothing while it waits (its body stays unread)."""
        if not self.backlogged:
            return True
        deadline = time.monotonic() + timeout
        while self.backlogged:
            left = deadline - time.monotonic()
            if left <= 0 or self._closing:
                return False
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=left)
        return True

    @property
    def spooled(self) -> int:
        return self.spool.pending if self.spool else 0

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    def record(self, span: dict[str, Any]) -> None:
        """Queue one gateway call's span (counted in the call metrics)."""
        if self.on_record is not None:
            try:
                self.on_record(span)
            except Exception:  # a metrics bug must not fail the call it measures
                log.exception("on_record hook failed")
        self._enqueue(span)

    def record_parts(self, spans: Iterable[dict[str, Any]]) -> None:
        """Queue spans that are parts of a gateway call, not calls (a guardrail's decisions): stored
        with it, but neither counted in the call metrics nor billed (a decision has no spend, and it
        counted as one more request in `spend` and in `fmops_requests{model="other"}`)."""
        for span in spans:
            span[INGESTED] = True  # INGESTED: never spend; kept through the spool
            self._enqueue(span)

    def _enqueue(self, span: dict[str, Any]) -> None:
        if len(self._queue) >= self.max_memory:
            self._overflow(span)
        else:
            self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def record_many(self, spans: Iterable[dict[str, Any]], *, ingested: bool = False) -> None:
        for span in spans:
            if ingested:
                span[INGESTED] = True
                self._enqueue(span)  # an application's span, not a call through the gateway
            else:
                self.record(span)

    def admit(self, spans: int = 1) -> None:
        """Strict callers, before the work they must record: raise `Unavailable` (503, Retry-After)
        unless `spans` more can be committed promptly, or at least kept in the spool."""
        if not self.healthy:
            reason, retry = "the trace store is unreachable", 5
        elif self._writing_since and time.monotonic() - self._writing_since > STALL_SECONDS:
            reason, retry = "the trace store is not answering", 2
        elif len(self._queue) + spans > self.max_memory:
            reason, retry = "the trace store is not keeping up", 1
        elif self.spool is not None and not self.spool.has_room():
            reason, retry = "the trace spool is full", 5
        else:
            return
        self.not_admitted += 1
        error = Unavailable(f"{reason}: the call was not made (strict trace durability); retry shortly")
        error.retry_after = retry
        raise error

    async def commit(
        self, spans: Sequence[dict[str, Any]], *, ingested: bool = False, timeout: float | None = None
    ) -> None:
        """Enqueue and return once these spans are committed (call `admit()` first).

        Waits `timeout` seconds (the caller's deadline), at most `commit_seconds` and at least
        `MIN_COMMIT_SECONDS`. Past it, the spans are fsync'd to the spool and `Unavailable` is raised
        (Retry-After); if the caller is cancelled meanwhile, they are spooled before it unwinds.
        """
        if not spans:
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(spans))
        for span in spans:
            span[_WAITER] = waiter
        self.record_many(spans, ingested=ingested)
        self._wake.set()
        limit = self.commit_seconds if timeout is None else min(timeout, self.commit_seconds)
        try:
            error = await asyncio.wait_for(asyncio.shield(waiter.future), max(limit, MIN_COMMIT_SECONDS))
        except TimeoutError:
            error = self._keep(spans, waiter)
        except asyncio.CancelledError:
            self._keep(spans, waiter)
            raise
        if error is None:
            return
        failed = Unavailable(
            "the trace store did not commit this call's trace in time; it is kept on disk and will be"
            " written when the store answers"
            if error == _SPOOLED
            else f"trace not stored: {error}"
        )
        failed.retry_after = 5
        raise failed

    def _keep(self, spans: Sequence[dict[str, Any]], waiter: _Waiter) -> str | None:
        """Spool (fsync'd) the spans of a commit that could not wait any longer; the outcome to report."""
        if waiter.future.done():  # settled just now
            return waiter.future.result()
        waiter.future.cancel()  # the spans stay queued; settling them later tells no one
        if self.spool is not None and all(self.spool.append(span, sync=True) for span in spans):
            self.spooled_strict += len(spans)
            return _SPOOLED
        log.error(
            "strict trace neither committed nor spooled: it waits in memory only",
            extra={"spans": len(spans), "trace": spans[0].get("trace_id")},
        )
        return "the trace store is unreachable and the spool refused it"

    def _overflow(self, span: dict[str, Any]) -> None:
        waiter = span.pop(_WAITER, None)
        # A strict span is fsync'd: it is kept, though not committed as its caller waits for.
        if self.spool is not None and self.spool.append(span, sync=waiter is not None):
            if waiter is not None:
                self.spooled_strict += 1
                waiter.done_one(_SPOOLED)
            return
        self.dropped += 1
        if waiter is not None:
            waiter.done_one("the trace queue and spool are full")

    def start(self) -> None:
        if self._task is None:
            if self.spool is not None:
                self.spool.adopt_orphans()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fmops-trace-writer")

    async def _run(self) -> None:
        backoff = self.flush_seconds
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            ok = await self._flush_available()
            backoff = self.flush_seconds if ok else min(max(backoff * 2, 0.5), 5.0)

    def _refill_from_spool(self) -> None:
        if self.spool is None or self.spool.pending == 0:
            return
        room = self.max_memory - len(self._queue)
        if room >= self.max_memory // 2:
            self._queue.extend(self.spool.take(room))

    async def _flush_available(self) -> bool:
        # One flusher at a time: the background loop, flush() and close() all come here.
        async with self._flushing:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        self._refill_from_spool()
        while self._queue:
            # islice walks the deque once; indexing it is O(i) a span (a batch of 2,000 from a
            # queue of 20,000: 137 µs, against 18).
            batch = list(islice(self._queue, self.batch_size))
            self._writing_since = time.monotonic()
            try:
                refused, inserted = await asyncio.to_thread(self._write, batch)
            except Exception as exc:
                self.failed_batches += 1
                self.healthy = False
                log.warning(
                    "trace batch not written; will retry",
                    extra={"spans": len(batch), "queued": self.pending, "error": str(exc)[:200]},
                )
                return False
            finally:
                self._writing_since = 0.0
            self.healthy = True
            for _ in batch:
                self._queue.popleft()
            self.written += len(inserted)
            self.replayed += len(batch) - len(inserted) - len(refused)
            self._settle(batch, refused, inserted)
            self._refill_from_spool()
            self._drained.set()
        return True

    def _settle(self, batch: list[dict[str, Any]], refused: dict[int, str], inserted: set[SpanKey]) -> None:
        """Tell waiters and the spool; pass newly stored spans (not replays) to subscribers."""
        for index, row in enumerate(batch):
            waiter = row.pop(_WAITER, None)
            if waiter is not None:
                waiter.done_one(refused.get(index))
            chunk = row.pop(SPOOL_MARK, None)
            if chunk is not None and self.spool is not None:
                self.spool.settled(chunk)
        stored = _first_copies(batch, inserted, all_new=len(inserted) == len(batch))
        if not stored:
            return
        for callback in self._subscribers:
            try:
                callback(stored)
            except Exception:
                log.exception("trace subscriber failed", extra={"subscriber": repr(callback)})

    def _write(self, batch: list[dict[str, Any]]) -> tuple[dict[int, str], set[SpanKey]]:
        """Insert a batch: the rows the database refused (index -> reason) and the keys newly stored."""
        started = time.perf_counter()
        rows = batch
        refused: dict[int, str] = {}
        try:
            # Under the write lock from the first statement (SQLite's BEGIN IMMEDIATE): a deferred
            # transaction met "database is locked" at once when another writer got in first.
            with self.store.write() as session:
                inserted = self._insert_rows(session, rows)
                self._after_insert(session, batch, inserted)
        except (IntegrityError, DataError):
            # One bad row must not block the queue: write the rest one by one.
            inserted = set()
            for index, row in enumerate(rows):
                try:
                    with self.store.write() as session:
                        new = self._insert_rows(session, [row])
                        self._after_insert(session, [batch[index]], new)
                    inserted |= new
                except (IntegrityError, DataError) as exc:
                    self.rejected += 1
                    refused[index] = str(exc.orig)[:200]
        log.debug(
            "trace batch written", extra={"spans": len(batch), "ms": (time.perf_counter() - started) * 1000}
        )
        return refused, inserted

    def _insert_rows(self, session: Session, rows: list[dict[str, Any]]) -> set[SpanKey]:
        """Insert; the (project, span) keys that were new (a replayed span is skipped, not an error)."""
        if self._sqlite_insert is not None:
            return self._sqlite_insert(session, rows)
        return self._postgres_insert(session, rows)

    def _after_insert(
        self, session: Session, batch: Sequence[dict[str, Any]], inserted: set[SpanKey]
    ) -> None:
        all_new = len(inserted) == len(batch)
        if inserted:
            tagged = [row for row in batch if row.get("tags")]
            if tagged:
                new = _first_copies(tagged, inserted, all_new=all_new)
                _insert_tags(session, new, sqlite=self._sqlite_insert is not None)
        # Stats roll-ups: mark the hours of a batch that stored something (a replay in it marks its
        # hour too, harmlessly, which spares filtering every batch).
        if self.on_stored is not None and inserted:
            self.on_stored(session, batch)
        # Spend counts each gateway call once: never a replayed span, never an ingested one.
        if self.on_batch is not None:
            billable = [r for r in _first_copies(batch, inserted, all_new=all_new) if not r.get(INGESTED)]
            if billable:
                self.on_batch(session, billable)

    async def flush(self) -> None:
        """Write everything queued now (tests, shutdown)."""
        await self._flush_available()

    async def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=timeout)
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            if not await self._flush_available():
                await asyncio.sleep(0.2)
        if self._queue and self.spool is not None:
            # The database is still away: keep what is left on disk for the next start.
            for span in self._queue:
                self._overflow(span)
            self._queue.clear()
        if self._queue:
            self.dropped += len(self._queue)
            log.error("spans lost at shutdown: database unreachable", extra={"spans": len(self._queue)})
            self._queue.clear()
        if self.spool is not None:
            self.spool.close()


def _insert_tags(session: Session, rows: Sequence[dict[str, Any]], *, sqlite: bool) -> None:
    """The tags of newly stored spans, in their transaction (distinct per span, cut to the column).

    On SQLite, values are bound as the span insert binds them (`_SqliteInsert`: the same text
    SQLAlchemy stores), which halves what a tagged span costs to write."""
    values = [
        (row["project_id"], row["span_id"], tag, row["start_time"])
        for row in rows
        for tag in dict.fromkeys(t[:MAX_TAG_LENGTH] for t in row["tags"])
    ]
    if not values:
        return
    if sqlite:
        converted = [(p, s, t, _sqlite_datetime(when)) for p, s, t, when in values]
        session.connection().exec_driver_sql(_SQLITE_TAGS, converted)
    else:
        session.execute(insert(SpanTag), [dict(zip(_TAG_COLUMNS, v, strict=True)) for v in values])


_TAG_COLUMNS = ("project_id", "span_id", "tag", "start_time")
_SQLITE_TAGS = "INSERT INTO span_tags (project_id, span_id, tag, start_time) VALUES (?, ?, ?, ?)"


# SQLite settings of a connection that writes spans (the trace writer's, the search indexer's). Set
# once per connection, which keeps them while the pool lends it to others.
SQLITE_CACHE_KIB = 64 * 1024
SQLITE_CHECKPOINT_PAGES = 10_000
_TUNED = "fmops_span_writes"


def tune_sqlite_writes(conn: Connection) -> None:
    """A 64 MB page cache (SQLite's default: 2 MB) and a WAL checkpoint every 10,000 pages (40 MB;
    the default: 1,000), on this connection.

    A batch of 5,000 spans dirties thousands of pages of the indexes keyed by random ids (span,
    trace, user, session): past the cache, SQLite spilled them to the WAL mid-transaction and read
    them back, and every commit passed 1,000 WAL pages, so every commit also copied its pages into
    the database file. With 2,000-span batches and a 16 MB cache, ~10 µs of the ~55 µs a span cost
    to write (benchmarks/otlp_ingest_stages.py); 5,000-span batches need the 64 MB to keep their
    dirty pages (SQLITE_BATCH: 120,000 spans, 5.1 pwrites a span against 6.7). The cache fills
    only as pages are read. Durability is unchanged (`synchronous` is the engine's); a reader may
    see a WAL of up to ~40 MB before it is checkpointed.
    """
    if conn.info.get(_TUNED):
        return
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    conn.info[_TUNED] = True


class _SqliteInsert:
    """Multi-row `INSERT ... ON CONFLICT DO NOTHING` with values converted here.

    SQLAlchemy's per-value bind processing was two thirds of the cost of writing a span on SQLite
    (benchmarks/otlp_ingest.py); converting the few typed columns ourselves, to exactly the text
    SQLAlchemy stores (so reads and comparisons are unchanged), makes a span ~3x cheaper to write.

    SQLite compiles a multi-row VALUES statement in ~8 µs per row, more than inserting the row: so
    a batch goes in chunks of a few fixed sizes (powers of two), whose statements the connection's
    statement cache keeps, instead of one statement of the batch's own size, compiled every time.
    """

    # SQLite's default bound on variables per statement (SQLITE_MAX_VARIABLE_NUMBER, 3.32+).
    MAX_VARIABLES = 32_766

    def __init__(self) -> None:
        columns = list(_TABLE.columns)
        self.names = [c.name for c in columns]
        self.defaults = [(c.name, _DEFAULTS[c.name]) for c in columns]
        converters = [(i, _sqlite_converter(c.type)) for i, c in enumerate(columns)]
        self.convert = [(i, f) for i, f in converters if f is not None]
        # SQLite would keep a longer string: cut it as PostgreSQL needs, so both store the same.
        self.lengths = [
            (i, c.type.length)
            for i, c in enumerate(columns)
            if isinstance(c.type, String) and c.type.length is not None
        ]
        # The chunk sizes: the largest power of two under the variable bound, and every smaller one.
        largest = 1 << ((self.MAX_VARIABLES // len(columns)).bit_length() - 1)
        self.sizes = [1 << n for n in range(largest.bit_length() - 1, -1, -1)]
        # Column names come from the table definition, never from input; values are bound.
        head = f"INSERT INTO spans ({', '.join(self.names)}) VALUES "  # noqa: S608
        tail = " ON CONFLICT (project_id, span_id) DO NOTHING"
        one = "(" + ", ".join("?" * len(columns)) + ")"
        self.statements = {size: head + ", ".join([one] * size) + tail for size in self.sizes}
        self.every = itemgetter(*self.names)

    def values(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Every row's values, row after row, as SQLite binds them (missing columns: defaults)."""
        defaults, convert, lengths, every = self.defaults, self.convert, self.lengths, self.every
        values: list[Any] = []
        for row in rows:
            try:
                one = list(every(row))  # a row with every column (OTLP ingest's): one C call
            except KeyError:
                one = [row.get(name, default) for name, default in defaults]
            # Private marks on the row are simply not read.
            for i, f in convert:
                one[i] = f(one[i])
            for i, length in lengths:
                value = one[i]
                if value.__class__ is str and len(value) > length:
                    one[i] = value[:length]
            values += one
        # SQLite stores a bound NaN as NULL (sqlite3VdbeMemSetDouble), and the sqlite3 module binds a
        # float as it is, where None goes through its adapter look-up first: ~0.27 µs a value, and a
        # span has ~10 NULL columns. A NaN meant as a value (a REAL) is stored as NULL either way.
        return [_NULL if value is None else value for value in values]

    def __call__(self, session: Session, rows: Sequence[dict[str, Any]]) -> set[SpanKey]:
        values = self.values(rows)
        conn = session.connection()
        tune_sqlite_writes(conn)
        inserted: set[SpanKey] = set()
        width, start, left, first = len(self.names), 0, len(rows), 0
        for size in self.sizes:
            while left >= size:
                end = start + size * width
                stored = conn.exec_driver_sql(self.statements[size], tuple(values[start:end])).rowcount
                if stored == size:  # the usual case: every row was new
                    inserted.update(map(_key, rows[first : first + size]))
                elif stored > 0:
                    inserted.update(_stored_last(conn, stored))
                start, left, first = end, left - size, first + size
        return inserted


_NULL = float("nan")
_LAST_STORED = "SELECT project_id, span_id FROM spans WHERE rowid > last_insert_rowid() - ?"


def _stored_last(conn: Connection, count: int) -> list[SpanKey]:
    """The keys of the `count` rows the last INSERT stored, when it skipped some (a replay): an
    insert under the write lock appends its rows at max(rowid) + 1 onwards, so they are the last
    `count` rowids. Reading them only then spares the usual batch a RETURNING row per span."""
    found = conn.exec_driver_sql(_LAST_STORED, (count,))
    return [(row[0], row[1]) for row in found]


def _sqlite_converter(column_type: Any) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        return _sqlite_datetime
    if isinstance(column_type, JSON):
        return _json_text
    if isinstance(column_type, Boolean):
        return _sqlite_bool
    return None  # text columns are cut to their length in _SqliteInsert, as PostgreSQL needs


def _sqlite_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    text = value.isoformat(" ")[:26]  # SQLAlchemy's SQLite format: microseconds always written
    return text if value.microsecond else text[:19] + ".000000"


def _json_text(value: Any) -> str:
    return json_dumps(value)  # None too: SQLAlchemy's JSON stores it as 'null', not NULL


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


class _PostgresInsert:
    """`INSERT ... SELECT FROM unnest(<one array per column>) ON CONFLICT DO NOTHING RETURNING`.

    One statement and 40 parameters per batch, whatever its size: psycopg sends each column as one
    array (binary, adapted in C), where SQLAlchemy's insertmanyvalues bound 40 values per span, each
    through its type's bind processor: that was ~4/5 of the CPU an ingested span cost on PostgreSQL
    (benchmarks/otlp_ingest.py). JSON is serialised as the store's engine does (`json_dumps`; None as
    JSON null, as SQLAlchemy's JSON type stores it) and cast to jsonb by the server. RETURNING tells
    which spans are new, so a replay is neither billed nor evaluated twice. The conflict key holds
    start_time, the partition key of the day partitions (migration 0022): a replay carries its span's
    start time, so it still conflicts.
    """

    def __init__(self) -> None:
        columns = list(_TABLE.columns)
        self.names = [c.name for c in columns]
        self.defaults = [(c.name, _DEFAULTS[c.name]) for c in columns]
        self.json = [i for i, c in enumerate(columns) if isinstance(c.type, JSON)]
        self.attributes = self.names.index("attributes")
        self.lengths = [
            (i, c.type.length)
            for i, c in enumerate(columns)
            if isinstance(c.type, String) and c.type.length is not None
        ]
        casts = [_postgres_array(c.type) for c in columns]
        # Column names and types come from the table definition, never from input; values are bound.
        # Names are quoted: `user` is a reserved word in PostgreSQL.
        quoted = ", ".join(f'"{name}"' for name in self.names)
        self.sql = (
            f"INSERT INTO spans ({quoted}) SELECT * FROM unnest("  # noqa: S608
            + ", ".join(f"%b::{cast}" for cast in casts)
            + ") ON CONFLICT (project_id, span_id, start_time) DO NOTHING RETURNING project_id, span_id"
        )

    def __call__(self, session: Session, rows: Sequence[dict[str, Any]]) -> set[SpanKey]:
        # Column-major: one list per column, filled row by row (missing columns take defaults,
        # private marks are simply not read).
        columns = [[row.get(name, default) for row in rows] for name, default in self.defaults]
        attributes = columns[self.attributes]
        for n, value in enumerate(attributes):
            if value is None:
                attributes[n] = {}
        for i in self.json:
            columns[i] = [json_dumps(value) for value in columns[i]]
        for i, length in self.lengths:
            # PostgreSQL refuses a string longer than its column; cut instead of losing the span.
            values = columns[i]
            for n, value in enumerate(values):
                if value.__class__ is str and len(value) > length:
                    values[n] = value[:length]
        conn = session.connection()
        return {(r[0], r[1]) for r in conn.exec_driver_sql(self.sql, tuple(columns))}


def _postgres_array(column_type: Any) -> str:
    """The array type a column's values are sent as (JSON as text: the server casts it)."""
    if isinstance(column_type, UTCDateTime):
        return "timestamptz[]"
    if isinstance(column_type, JSON):
        return "jsonb[]"
    if isinstance(column_type, Boolean):
        return "boolean[]"
    if isinstance(column_type, Integer):
        return "integer[]"
    if isinstance(column_type, Float):
        return "double precision[]"
    return "text[]"
