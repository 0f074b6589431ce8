"""Alembic migrations, run programmatically: on start-up and by `fmops db upgrade`.

Every CLI command upgrades its database first, so the usual case, a database already at the head,
is answered without Alembic (a third of a second and 15 MB of imports): the head is read from the
revision files, the database's revision from `alembic_version`. Anything else goes to Alembic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from fmops.store.engine import Store
from fmops.store.partitions import PARTITION_NAME

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same for every fmops process sharing a database.
_PG_LOCK_ID = 0x666D6F7073
# Kept by migration 0012's SQL, not by the models: the trace search index (SQLite FTS5, pg_trgm).
SEARCH_INDEX = ("spans_fts", "ix_spans_input_trgm", "ix_spans_output_trgm")


def modelled(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's `include_name` when comparing the models with a database: False for what the
    models leave out on purpose (the search index and FTS5's shadow tables, the trace tables' day
    partitions on PostgreSQL: parts of `spans` and `span_tags`, see fmops.store.partitions)."""
    name = name or ""
    return not (name.startswith(SEARCH_INDEX) or (type_ == "table" and PARTITION_NAME.match(name)))


def _config(conn: Connection) -> Config:
    from alembic.config import Config

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
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(store: Store) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_REVISION = re.compile(r"^(down_revision|revision)\b[^=\n]*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.M)


@cache
def _head_from_files() -> str | None:
    """The one revision no other revision names as its parent; None when the files do not say
    plainly (a branch, a merge, a revision written another way): then Alembic decides."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((m[1], m[2]) for m in _REVISION.finditer(path.read_text()))
        if "revision" not in found or not found["revision"] or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(store: Store) -> str | None:
    """The head revision when the database is at it (one small query), else None."""
    head = _head_from_files()
    if head is None:
        return None
    try:
        with store.engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:  # no alembic_version table yet: a new database
        return None
    return head if found == [head] else None


def upgrade(store: Store, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply pending migrations; returns (revision before, revision after)."""
    if revision == "head" and (head := _at_head(store)) is not None:
        return head, head
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn, _migration_lock(conn):
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)
        conn.commit()
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def is_current(store: Store) -> bool:
    return current_revision(store) == head_revision()
