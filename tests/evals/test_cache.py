"""The eval response cache stays bounded: pruned by age, then to a most number of entries, oldest
first, chunk by chunk; by the server's background service and by `fmops eval cache prune`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from fmops.evals.cache import CachePruner, clear, prune, stats
from fmops.store import Store, utcnow
from fmops.store.models import EvalCache
from support.cli_runs import run_session, session_env

NOW = utcnow()


def fill(store: Store, ages_days: dict[str, float], project: str = "p1") -> None:
    with store.write() as session:
        for key, age in ages_days.items():
            session.add(
                EvalCache(
                    key=key,
                    project_id=project,
                    response={"body": {"choices": [{"message": {"content": key * 10}}]}},
                    created_at=NOW - timedelta(days=age),
                )
            )


def keys(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(EvalCache.key)))


def test_prune_deletes_by_age_then_the_oldest_beyond_the_most_entries(store: Store) -> None:
    fill(store, {"a": 40, "b": 31, "c": 20, "d": 10, "e": 5, "f": 1, "g": 0})
    done = prune(store, days=30, max_entries=3, now=NOW, chunk=2)  # chunks of 2: several transactions
    assert (done.expired, done.over_size, done.deleted) == (2, 2, 4)
    assert keys(store) == {"e", "f", "g"}
    assert prune(store, days=30, max_entries=3, now=NOW).deleted == 0  # within both bounds now


def test_zero_turns_a_bound_off(store: Store) -> None:
    fill(store, {"a": 4000, "b": 3000, "c": 1})
    assert prune(store, days=0, max_entries=0, now=NOW).deleted == 0
    assert prune(store, days=0, max_entries=2, now=NOW).over_size == 1
    assert keys(store) == {"b", "c"}
    assert prune(store, days=365, max_entries=0, now=NOW).expired == 1
    assert keys(store) == {"c"}


def test_stats_count_entries_projects_ages_and_bytes(store: Store) -> None:
    empty = stats(store)
    assert (empty.entries, empty.projects, empty.oldest, empty.response_bytes) == (0, 0, None, 0)
    fill(store, {"a": 3, "b": 2})
    fill(store, {"c": 1}, project="p2")
    found = stats(store)
    assert (found.entries, found.projects) == (3, 2)
    assert found.oldest is not None
    assert found.newest is not None
    assert abs((found.oldest - (NOW - timedelta(days=3))).total_seconds()) < 1
    assert found.newest > found.oldest
    assert found.response_bytes > 3 * 30  # each stored answer holds its key ten times, and JSON around it
    assert stats(store, "p2").entries == 1
    assert clear(store, chunk=2) == 3
    assert stats(store).entries == 0


def test_a_pruned_answer_is_called_again_the_rest_stay_cached(world) -> None:
    suite = {
        "name": "cache-prune",
        "cases": [{"input": f"case {i}", "expected": "x"} for i in range(4)],
        "targets": [{"model": "mock-a"}],
        "scorers": ["json"],
    }
    world.run(suite)
    store = world.platform.store
    assert stats(store).entries == 4
    with store.write() as session:  # age two of the answers
        for entry in list(session.scalars(select(EvalCache).limit(2))):
            entry.created_at = NOW - timedelta(days=100)
    assert prune(store, days=30, max_entries=0).expired == 2
    world.mock.reset()
    again = world.run(suite)
    assert len(world.mock.state.requests) == 2  # only the pruned ones were called
    rows = world.evals.rows(again.id)
    assert sorted(r["cached"] for r in rows) == [False, False, True, True]
    assert stats(store).entries == 4


def test_the_server_prunes_in_the_background(store: Store) -> None:
    fill(store, {"old": 90, "older": 91, "new": 1})

    async def one_round() -> None:
        pruner = CachePruner(store, interval_seconds=3600, days=30, max_entries=0)
        await pruner.start()  # the first round runs at start-up
        for _ in range(100):
            if keys(store) == {"new"}:
                break
            await asyncio.sleep(0.05)
        await pruner.close()

    asyncio.run(one_round())
    assert keys(store) == {"new"}


def test_cli_stats_and_prune(store: Store, tmp_path: Path) -> None:
    fill(store, {"a": 50, "b": 40, "c": 3, "d": 2, "e": 1})
    commands = [
        ["eval", "cache", "stats", "--json"],
        ["eval", "cache", "prune", "--json"],  # the settings: 30 days, 200,000 entries
        ["eval", "cache", "prune", "--max-entries", "2"],
        ["eval", "cache", "stats"],
        ["eval", "cache", "prune", "--all", "--json"],
    ]
    env = session_env(tmp_path, columns=200) | {"FMOPS_DATABASE_URL": store.url}
    before, pruned, capped, shown, cleared = (o.ok() for o in run_session(env, commands))
    assert json.loads(before)["entries"] == 5
    assert json.loads(before)["bounds"] == {"days": 30.0, "max_entries": 200_000}
    assert json.loads(pruned) == {"expired": 2, "over_size": 0, "deleted": 2}
    assert "deleted 1 cached answers (0 older than 30 days, 1 beyond the newest 2)" in capped
    assert "2 cached answers of 1 project(s)" in shown
    assert json.loads(cleared)["deleted"] == 2
    assert keys(store) == set()
