"""The metadata store: one SQLAlchemy engine, sessions for reading and for writing.

SQLite runs in WAL mode with a busy timeout, and write sessions start with `BEGIN IMMEDIATE`: a
deferred transaction that reads and then writes can fail at once with "database is locked" when
another writer got in between, while an immediate one waits its turn (up to the busy timeout).

`synchronous=NORMAL` by default: in WAL mode a commit survives the process being killed, but the
last commits may be lost to a power cut (the WAL is synced at checkpoints only). A `durable` store
(strict trace durability) uses `FULL`: the WAL is synced at every commit, so what a commit returned
for survives a power cut too. PostgreSQL is durable at commit unless `synchronous_commit` is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "fmops_write"


def json_dumps(value: Any) -> str:
    # orjson: ~10x the standard library on span inputs and outputs, and text stays UTF-8 (not
    # \u-escaped), so free-text search finds non-ASCII words as typed.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


_JSON = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}


def _sqlite_engine(url: str, echo: bool, durable: bool) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=16,
        **_JSON,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def make_engine(url: str, *, echo: bool = False, durable: bool = False) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo, durable)
    return create_engine(
        url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_recycle=1800, **_JSON
    )


class Store:
    """Owns the engine; services ask it for sessions and never build their own."""

    def __init__(self, url: str, *, echo: bool = False, durable: bool = False) -> None:
        """`durable`: every commit is on disk when it returns, power cuts included (SQLite: FULL)."""
        self.url = url
        self.engine = make_engine(url, echo=echo, durable=durable)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (and writes that need no read-then-write atomicity); commits on success."""
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session that holds the write lock from its first statement (SQLite); commits on success."""
        with self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
