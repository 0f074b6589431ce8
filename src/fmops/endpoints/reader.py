"""Reading a project's registry generation on every endpoint call, cheaply.

Through a pooled SQLAlchemy connection a read costs a pool checkout (on PostgreSQL a pre-ping
round trip too), a BEGIN, the SELECT and a ROLLBACK; here the SELECT goes alone, on connections
of the reader's own (detached from the store's pool, so they take none of its slots):

- SQLite: the read runs inline, on the event loop. In WAL mode readers never wait for writers
  and the row is hot, so it takes microseconds, where a hop to a worker thread measured up to
  0.8 ms on a busy two-core machine; a short busy timeout bounds the rare wait (WAL recovery).
- PostgreSQL: a network round trip, so in a small thread pool of its own, each thread with one
  autocommit connection.

A connection that fails is replaced once; a second failure is a 503.

SQLite: one read per project per turn of the event loop. Every call that runs in one turn (one
batch of ready callbacks) arrived before that turn began (whatever wakes a call, its request's
bytes included, is scheduled before the batch it runs in), so a read made in the turn, however
early, began after each of them arrived and sees every change committed before it: what a read of
its own would see. The value is forgotten by a callback scheduled when it was read, which runs
before anything scheduled after the read, and at once when this process commits a change
(`generation.local_changes`: a change made earlier in the same turn). Under load, calls share a
read (each read gives up the GIL, and on a busy server the trace writer's threads take it: reads
measured ~250 us each there).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fmops.endpoints import generation
from fmops.errors import Unavailable
from fmops.store import Store

log = logging.getLogger(__name__)
SQLITE_BUSY_MS = 100


class GenerationReader:
    def __init__(self, store: Store, threads: int = 4) -> None:
        self.store = store
        dialect = store.engine.dialect
        self._postgres = dialect.name == "postgresql"
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT generation FROM registry_generations WHERE project_id = {mark}"  # noqa: S608
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()  # a connection per thread
        self._opened: list[Any] = []  # every one of them, to close them all at the end
        self._epoch = 0  # bumped by close(): threads then open fresh connections
        self._lock = threading.Lock()
        self._turn = threading.local()  # per thread (so per loop): the loop and this turn's reads

    async def read(self, project_id: str) -> int:
        """The project's generation now (0 before its first change)."""
        if not self._postgres:
            return self._read_this_turn(project_id)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="fmops-generation")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read_now, project_id)

    def _read_this_turn(self, project_id: str) -> int:
        loop = asyncio.get_running_loop()
        turn, changes = self._turn, generation.local_changes()
        # A new loop (an old one may have closed mid-turn), or a change committed here since.
        if getattr(turn, "loop", None) is not loop or turn.changes != changes:
            turn.loop, turn.changes, turn.read = loop, changes, {}
        read: dict[str, int] = turn.read
        found = read.get(project_id)
        if found is None:
            found = self.read_now(project_id)
            if not read:
                loop.call_soon(read.clear)  # runs before whatever is scheduled after this read
            read[project_id] = found
        return found

    # --- blocking, a connection per thread ------------------------------------------------------

    def read_now(self, project_id: str) -> int:
        try:
            return self._query(project_id)
        except Exception:
            log.info("registry generation read failed; reconnecting", exc_info=True)
            self._forget()
        try:
            return self._query(project_id)
        except Exception as exc:
            self._forget()
            raise Unavailable("the metadata database is unavailable; retry shortly") from exc

    def _query(self, project_id: str) -> int:
        cursor = self._connection().cursor()
        try:
            cursor.execute(self._sql, (project_id,))
            row = cursor.fetchone()
        finally:
            cursor.close()
        return int(row[0]) if row else 0

    def _connection(self) -> Any:
        if getattr(self._local, "epoch", None) != self._epoch:
            self._local.proxy = None
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = self.store.engine.raw_connection()
            proxy.detach()  # this thread's own from now on; the pool makes another when it needs one
            driver: Any = proxy.dbapi_connection
            if self._postgres:
                driver.autocommit = True  # no transaction left open between reads
            else:
                driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            with self._lock:
                self._opened.append(proxy)
                self._local.epoch = self._epoch
            self._local.proxy = proxy
        return proxy.dbapi_connection

    def _forget(self) -> None:
        proxy = getattr(self._local, "proxy", None)
        self._local.proxy = None
        if proxy is not None:
            _close(proxy)

    def close(self) -> None:
        """Close every connection; a later read opens new ones (threads see the new epoch)."""
        with self._lock:
            opened, self._opened = self._opened, []
            self._epoch += 1
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for proxy in opened:
            _close(proxy)


def _close(proxy: Any) -> None:
    try:
        proxy.close()
    except Exception:
        log.debug("generation reader connection did not close cleanly", exc_info=True)
