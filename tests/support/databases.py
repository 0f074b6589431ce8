"""Throw-away databases: a SQLite file per test, a PostgreSQL database per test that is dropped after.

Migrating a new database takes ~0.35 s on SQLite and ~0.85 s on PostgreSQL, and hundreds of tests
want one: `migrated_sqlite_url` copies a file migrated once per test process, and
`postgres_database(migrated=True)` clones a template database migrated once per migration set
(named after a hash of the migration files, so a new migration builds a new template).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ProgrammingError

from fmops.store import Store, upgrade
from fmops.store.migrate import MIGRATIONS
from support.services import unavailable

POSTGRES_ADMIN_URL = os.environ.get(
    "FMOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_TEMPLATE_PREFIX = "fmops_tmpl_"
_TEMPLATE_LOCK = 0x666D6F7074  # advisory lock: parallel test processes build the template once


class TemplateMigrationError(RuntimeError):
    """The migrations failed on the PostgreSQL template: a defect to fix, never a reason to skip."""


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'fmops-test.db'}"


@cache
def _migrations_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def _sqlite_template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fmops-sqlite-template-"))
    store = Store(sqlite_url(folder))
    upgrade(store)
    store.dispose()  # the last connection closing checkpoints the WAL into the file
    return folder / "fmops-test.db"


def migrated_sqlite_url(folder: Path) -> str:
    shutil.copyfile(_sqlite_template(), folder / "fmops-test.db")
    return sqlite_url(folder)


def _url(name: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _ensure_template(admin: Engine) -> str:
    name = _TEMPLATE_PREFIX + _migrations_hash()
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _TEMPLATE_LOCK})
        try:
            found = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not found:
                for (stale,) in conn.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                    {"p": _TEMPLATE_PREFIX + "%"},
                ):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))
                building = name + "_building"
                conn.execute(text(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{building}"'))
                store = Store(_url(building))
                try:
                    upgrade(store)
                except Exception as exc:
                    store.dispose()
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
                    raise TemplateMigrationError(
                        f"migrating the PostgreSQL template to head failed: {type(exc).__name__}: {exc}"
                    ) from exc
                store.dispose()
                conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _TEMPLATE_LOCK})
    return name


@contextmanager
def postgres_database(*, migrated: bool = False) -> Iterator[str]:
    name = f"fmops_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}: {exc}")
    # Reachable: from here on an error is a failure (a migration error is not an outage).
    try:
        for attempt in range(3):
            template = _ensure_template(admin) if migrated else None
            try:
                with admin.connect() as conn:
                    clause = f' TEMPLATE "{template}"' if template else ""
                    conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
                break
            except ProgrammingError as exc:
                # Another checkout's test run on this server (other migrations) dropped our template
                # as stale between building and copying it: build it again.
                if template is None or "does not exist" not in str(exc.orig) or attempt == 2:
                    raise
    except BaseException:
        admin.dispose()
        raise
    try:
        yield _url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
