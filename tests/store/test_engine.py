from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from fmops.server.runner import prepare
from fmops.settings import load_settings
from fmops.store import Store, current_revision, head_revision, new_id
from fmops.store.models import Project
from support.services import not_applicable


def test_migrated_to_head(store: Store) -> None:
    assert current_revision(store) == head_revision() is not None


def test_sqlite_runs_in_wal_mode_with_busy_timeout(store: Store) -> None:
    if store.dialect != "sqlite":
        not_applicable("SQLite pragmas; PostgreSQL has no equivalent")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_datetimes_round_trip_as_utc(store: Store) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=7)
    with store.write() as session:
        session.add(Project(id="p1", name="p1", created_at=moment.astimezone()))
    with store.session() as session:
        loaded = session.scalar(select(Project).where(Project.id == "p1"))
    assert loaded is not None
    assert loaded.created_at == moment
    assert loaded.created_at.tzinfo is not None


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(len(i) == 32 for i in ids)
    # Same-millisecond ids may tie on time; across milliseconds order must hold.
    assert ids[0][:12] <= ids[-1][:12]


def test_sqlite_syncs_every_commit_only_in_strict_durability(tmp_path: Path) -> None:
    """NORMAL loses the last commits to a power cut (WAL synced at checkpoints); strict needs FULL."""

    def synchronous(store: Store) -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(text("PRAGMA synchronous")).scalar_one())

    url = f"sqlite:///{tmp_path / 'plain.db'}"
    plain, durable = Store(url), Store(url, durable=True)
    assert (synchronous(plain), synchronous(durable)) == (1, 2)  # NORMAL, FULL
    served, _ = prepare(load_settings({"home": tmp_path / "home", "trace_durability": "strict"}))
    assert synchronous(served) == 2  # what `fmops up` uses in strict mode
    for store in (plain, durable, served):
        store.dispose()
