"""Alembic migrations, run programmatically: on start-up and by `fmops db upgrade`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from fmops.store.engine import Store

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same for every fmops process sharing a database.
_PG_LOCK_ID = 0x666D6F7073
# Kept by migration 0012's SQL, not by the models: the trace search index (SQLite FTS5, pg_trgm).
SEARCH_INDEX = ("spans_fts", "ix_spans_input_trgm", "ix_spans_output_trgm")


def modelled(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's `include_name` when comparing the models with a database: False for what the
    models leave out on purpose (the search index and FTS5's shadow tables)."""
    return not (name or "").startswith(SEARCH_INDEX)


def _config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Replicas starting together on PostgreSQL take turns; SQLite serialises writers by itself."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
    try:
        yield
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})


def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: Store, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (revision before, revision after)."""
    with store.engine.connect() as conn, _migration_lock(conn):
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def is_current(store: Store) -> bool:
    return current_revision(store) == head_revision()
