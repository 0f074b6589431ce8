"""The eval response cache kept bounded: entries older than `eval_cache_days` are deleted, then the
oldest ones beyond `eval_cache_max_entries` (0 turns either bound off).

A pruned entry costs one call the next time its case runs, nothing else: results keep their own
copy of the output, and a run never reads the cache after it looked its keys up at the start.
`CachePruner`, a background service of the server, prunes every `eval_cache_prune_interval_seconds`;
`fmops eval cache prune` does it now. Deletes go a chunk at a time, each its own short transaction,
so on SQLite the trace writer and the API keep writing in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from fmops.periodic import Periodic
from fmops.store import Store, utcnow
from fmops.store.models import EvalCache

log = logging.getLogger(__name__)
CHUNK = 1000
MAX_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class CacheStats:
    entries: int
    projects: int
    oldest: datetime | None
    newest: datetime | None
    # The stored JSON of every answer (the database's own overhead is not counted).
    response_bytes: int


@dataclass(frozen=True)
class Pruned:
    expired: int  # older than the days kept
    over_size: int  # the oldest of those beyond the most entries kept

    @property
    def deleted(self) -> int:
        return self.expired + self.over_size


def stats(store: Store, project_id: str | None = None) -> CacheStats:
    """How big the cache is: everything, or one project's entries."""
    size = (
        func.pg_column_size(EvalCache.response)
        if store.dialect == "postgresql"
        else func.length(func.json(EvalCache.response))
    )
    query = select(
        func.count(),
        func.count(func.distinct(EvalCache.project_id)),
        func.min(EvalCache.created_at),
        func.max(EvalCache.created_at),
        func.coalesce(func.sum(size), 0),
    ).select_from(EvalCache)
    if project_id is not None:
        query = query.where(EvalCache.project_id == project_id)
    with store.session() as session:
        entries, projects, oldest, newest, size_sum = session.execute(query).one()
    return CacheStats(int(entries), int(projects), oldest, newest, int(size_sum))


def _delete_chunk(store: Store, *, before: datetime | None, limit: int) -> int:
    """Delete up to `limit` of the oldest entries (those created before `before`, when given)."""
    oldest = select(EvalCache.key).order_by(EvalCache.created_at, EvalCache.key).limit(limit)
    if before is not None:
        oldest = oldest.where(EvalCache.created_at < before)
    with store.session() as session:  # read first: a round with nothing to prune takes no write lock
        keys = list(session.scalars(oldest))
    if keys:
        with store.write() as session:
            session.execute(delete(EvalCache).where(EvalCache.key.in_(keys)))
    return len(keys)


def _in_chunks(store: Store, count: int | None, before: datetime | None, chunk: int) -> int:
    """Delete `count` oldest entries (every one before `before` when None), a chunk at a time."""
    done = 0
    while count is None or done < count:
        began = time.monotonic()
        size = chunk if count is None else min(chunk, count - done)
        deleted = _delete_chunk(store, before=before, limit=size)
        done += deleted
        if deleted < size:
            break
        if store.dialect == "sqlite":  # let waiting writers take the lock between two chunks
            time.sleep(min(time.monotonic() - began, MAX_PAUSE_SECONDS))
    return done


def prune(
    store: Store,
    *,
    days: float,
    max_entries: int,
    now: datetime | None = None,
    chunk: int = CHUNK,
) -> Pruned:
    """Delete entries older than `days`, then the oldest beyond `max_entries` (0: no such bound)."""
    if days < 0 or max_entries < 0:
        raise ValueError("days and max_entries are 0 (no bound) or more")
    expired = 0
    if days > 0:
        expired = _in_chunks(store, None, (now or utcnow()) - timedelta(days=days), chunk)
    over_size = 0
    if max_entries > 0:
        with store.session() as session:
            total = int(session.scalar(select(func.count()).select_from(EvalCache)) or 0)
        if total > max_entries:
            over_size = _in_chunks(store, total - max_entries, None, chunk)
    return Pruned(expired, over_size)


def clear(store: Store, chunk: int = CHUNK) -> int:
    """Delete every entry (a chunk at a time); how many there were."""
    return _in_chunks(store, None, None, chunk)


class CachePruner(Periodic):
    """Background service: prunes the eval cache every so often, first soon after start-up."""

    task_name = "fmops-eval-cache"
    failure_message = "could not prune the eval cache; will retry"

    def __init__(self, store: Store, *, interval_seconds: float, days: float, max_entries: int) -> None:
        super().__init__(interval_seconds, wait_first=False)
        self.store = store
        self.days = days
        self.max_entries = max_entries

    async def run_round(self) -> None:
        if self.days == 0 and self.max_entries == 0:
            return
        done = await asyncio.to_thread(prune, self.store, days=self.days, max_entries=self.max_entries)
        if done.deleted:
            log.info("eval cache pruned", extra={"expired": done.expired, "over_size": done.over_size})


__all__ = ["CachePruner", "CacheStats", "Pruned", "clear", "prune", "stats"]
