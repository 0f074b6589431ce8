"""The registry generation on SQLite is read once per turn of the event loop and project
(fmops.endpoints.reader), and that read is as current as one of each call's own: a change committed
elsewhere is seen from the next turn, one committed in this process at once, even within the turn."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmops.endpoints.generation import bump
from fmops.endpoints.reader import GenerationReader
from fmops.store import Store
from support.databases import migrated_sqlite_url

pytestmark = pytest.mark.anyio


class CountingReader(GenerationReader):
    """A reader that counts the queries it sends."""

    queries = 0

    def _query(self, project_id: str) -> int:
        self.queries += 1
        return super()._query(project_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    found = Store(migrated_sqlite_url(tmp_path))
    yield found
    found.dispose()


def bump_now(store: Store, project_id: str) -> None:
    with store.write() as session:  # commits on leaving
        bump(session, project_id)


async def test_calls_in_one_turn_share_a_read(store: Store) -> None:
    reader = CountingReader(store)
    bump_now(store, "p")
    assert [await reader.read("p") for _ in range(5)] == [1] * 5  # nothing yields between them
    assert reader.queries == 1
    await asyncio.sleep(0)  # the next turn reads again
    assert await reader.read("p") == 1
    assert reader.queries == 2
    reader.close()


async def test_a_change_committed_here_is_seen_within_the_turn(store: Store) -> None:
    reader = CountingReader(store)
    assert await reader.read("p") == 0
    bump_now(store, "p")  # no yield: the same turn
    assert await reader.read("p") == 1
    assert reader.queries == 2
    reader.close()


async def test_a_change_committed_elsewhere_is_seen_from_the_next_turn(store: Store) -> None:
    reader = CountingReader(store)
    assert await reader.read("p") == 0
    # Another process's commit: a connection of its own, unknown to this process's sessions.
    path = store.engine.url.database
    assert path is not None
    other = sqlite3.connect(path)
    with other:
        other.execute("INSERT INTO registry_generations (project_id, generation) VALUES ('p', 7)")
    other.close()
    await asyncio.sleep(0)  # any call that arrives after that commit runs in a later turn
    assert await reader.read("p") == 7
    reader.close()
