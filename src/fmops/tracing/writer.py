"""Writes spans off the request path: callers enqueue, a background task inserts in batches.

`record()` never blocks and never raises. Batches go to the database from a thread, every
`flush_seconds` or as soon as `batch_size` spans wait. When the queue is full (database down for
long), the oldest spans are dropped and counted; on shutdown everything queued is flushed. A
batch that fails to write stays queued and is retried, so a database outage loses nothing that
fits in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fmops.store import Store
from fmops.store.models import Span

log = logging.getLogger(__name__)
# A Core insert: executemany straight to the driver, without the ORM's bulk bookkeeping.
_INSERT = insert(Span.__table__)  # type: ignore[arg-type]  # a Table; mypy sees FromClause
# Extra work done in the same transaction as a batch of spans (e.g. spend accounting).
BatchHook = Callable[[Session, Sequence[dict[str, Any]]], None]
# Called with each span as it is recorded, on the request path (e.g. Prometheus metrics): keep it cheap.
RecordHook = Callable[[dict[str, Any]], None]


class TraceWriter:
    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 500,
        flush_seconds: float = 0.05,
        max_queue: int = 200_000,
        on_batch: BatchHook | None = None,
        on_record: RecordHook | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_record = on_record
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def record(self, span: dict[str, Any]) -> None:
        if self.on_record is not None:
            try:
                self.on_record(span)
            except Exception:  # a metrics bug must not fail the call it measures
                log.exception("on_record hook failed")
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fmops-trace-writer")

    async def _run(self) -> None:
        backoff = self.flush_seconds
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            ok = await self._flush_available()
            backoff = self.flush_seconds if ok else min(max(backoff * 2, 0.5), 5.0)

    async def _flush_available(self) -> bool:
        while self._queue:
            batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception as exc:
                self.failed_batches += 1
                log.warning(
                    "trace batch not written; will retry",
                    extra={"spans": len(batch), "error": str(exc)[:200]},
                )
                return False
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)
        return True

    def _write(self, batch: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            with self.store.session() as session:
                session.execute(_INSERT, batch)
                if self.on_batch is not None:
                    self.on_batch(session, batch)
        except IntegrityError:
            # One bad row (a replayed id) must not block the queue: write the rest one by one.
            for row in batch:
                try:
                    with self.store.session() as session:
                        session.execute(_INSERT, [row])
                        if self.on_batch is not None:
                            self.on_batch(session, [row])
                except IntegrityError:
                    self.rejected += 1
        log.debug(
            "trace batch written", extra={"spans": len(batch), "ms": (time.perf_counter() - started) * 1000}
        )

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
        if self._queue:
            self.dropped += len(self._queue)
            log.error("spans lost at shutdown: database unreachable", extra={"spans": len(self._queue)})
            self._queue.clear()
