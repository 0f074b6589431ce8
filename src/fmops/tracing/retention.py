"""Retention: spans older than their project's `retention_days` are deleted, so storage stays bounded.

A project's days come from `Project.retention_days`, or the `trace_retention_days` setting when it
has none; 0 keeps traces forever. Scores go with the last span of their trace.

The `traces.retention` job deletes in chunks, each its own short transaction: on SQLite a chunk
holds the write lock for some tens of milliseconds and then pauses as long, so the trace writer and
the API keep writing while it runs. `RetentionScheduler`, a background service of the server,
queues that job every `retention_interval_seconds` unless one is already queued or running.

On PostgreSQL the trace tables are partitioned by day (fmops.store.partitions): a day whose every
span is past its project's retention is dropped whole, with no row deleted; only where projects
with fewer days share a day with projects keeping it are that day's rows deleted one chunk at a
time, as on SQLite. So that a uniform retention never deletes rows, a span there goes when its
whole UTC day is past its project's days (up to a day later than the exact cutoff). Each round
also creates the partitions of the next days (`ensure_ahead`), so inserts land in a day, not in
a catch-all partition.

Nothing else may point into spans for good: datasets (still to come) must copy what they take from
traces, so that retention never breaks one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import and_, delete, exists, func, select, text
from sqlalchemy.exc import OperationalError

from fmops.auth.roles import Role
from fmops.jobs import JobContext, JobStatus, job_kind
from fmops.periodic import Periodic
from fmops.stats.rollup import delete_before
from fmops.store import Store, utcnow
from fmops.store import partitions as parts
from fmops.store.models import Job, Project, Score, Span, SpanTag

log = logging.getLogger(__name__)
KIND = "traces.retention"
CHUNK_SPANS = 500  # about 60 ms of SQLite's write lock per chunk, on 1,000,000 spans
MAX_PAUSE_SECONDS = 0.2
_SCHEDULE_LOCK_ID = 0x666D6F7073_02  # PostgreSQL advisory lock: one replica queues the job at a time
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ProjectRetention:
    project_id: str
    name: str
    days: int  # 0: forever

    def cutoff(self, now: datetime) -> datetime | None:
        return None if self.days == 0 else now - timedelta(days=self.days)


@dataclass
class RetentionResult:
    spans_deleted: int = 0
    scores_deleted: int = 0
    projects: int = 0  # projects whose traces expire (days > 0)
    days_dropped: int = 0  # PostgreSQL: day partitions dropped whole (their spans are counted above)


def policies(store: Store, default_days: int) -> list[ProjectRetention]:
    with store.session() as session:
        rows = session.execute(
            select(Project.id, Project.name, Project.retention_days).order_by(Project.name)
        )
        return [
            ProjectRetention(pid, name, default_days if days is None else max(days, 0))
            for pid, name, days in rows
        ]


def _expired(policy: ProjectRetention, cutoff: datetime) -> Any:
    return and_(Span.project_id == policy.project_id, Span.start_time < cutoff)


def _delete_chunk(store: Store, policy: ProjectRetention, cutoff: datetime, chunk: int) -> tuple[int, int]:
    """Delete up to `chunk` expired spans, and the scores of traces left without spans."""
    with store.write() as session:
        some = select(Span.span_id).where(_expired(policy, cutoff)).limit(chunk)
        # The time bound again on the outer delete, so PostgreSQL reads only the expired day partitions.
        mine = delete(Span).where(
            Span.project_id == policy.project_id, Span.start_time < cutoff, Span.span_id.in_(some)
        )
        deleted_rows = session.execute(mine.returning(Span.trace_id, Span.span_id)).all()
        if not deleted_rows:
            return 0, 0
        deleted = [trace_id for trace_id, _ in deleted_rows]
        # Their tags, by key (the span_tags primary key starts with project and span).
        session.execute(
            delete(SpanTag).where(
                SpanTag.project_id == policy.project_id, SpanTag.span_id.in_([s for _, s in deleted_rows])
            )
        )
        delete_before(session, policy.project_id, cutoff)  # stats roll-ups of the expired hours
        traces = set(deleted)
        spans_left = exists().where(Span.project_id == Score.project_id, Span.trace_id == Score.trace_id)
        scores = session.execute(
            delete(Score)
            .where(Score.project_id == policy.project_id, Score.trace_id.in_(traces), ~spans_left)
            .returning(Score.id)
        )
        return len(deleted), len(scores.all())


def enforce(
    store: Store,
    *,
    default_days: int,
    now: datetime | None = None,
    chunk: int = CHUNK_SPANS,
    progress: Progress | None = None,
) -> RetentionResult:
    """Delete every project's expired spans (and their scores), chunk by chunk."""
    now = now or utcnow()
    result = RetentionResult()
    every = policies(store, default_days)
    expiring = [(p, c) for p in every if (c := p.cutoff(now)) is not None]
    result.projects = len(expiring)
    if ensure_partitions(store, now) is not None:
        # Whole days first; the rows left are deleted up to the start of each cutoff's day.
        _drop_expired_days(store, every, now, result)
        expiring = [(p, parts.day_start(c)) for p, c in expiring]
    with store.session() as session:
        todo = {
            p.project_id: int(session.scalar(select(func.count()).where(_expired(p, c))) or 0)
            for p, c in expiring
        }
    total = sum(todo.values())
    for policy, cutoff in expiring:
        while todo[policy.project_id] > 0:
            began = time.monotonic()
            spans, scores = _delete_chunk(store, policy, cutoff, chunk)
            if spans == 0:
                break
            if store.dialect == "sqlite":
                # Let waiting writers in: they poll for the lock, and would rarely catch the moment
                # between one chunk's commit and the next chunk's BEGIN IMMEDIATE.
                time.sleep(min(time.monotonic() - began, MAX_PAUSE_SECONDS))
            result.spans_deleted += spans
            result.scores_deleted += scores
            todo[policy.project_id] = max(todo[policy.project_id] - spans, 0)
            if progress is not None:
                progress(
                    result.spans_deleted / total,
                    f"{policy.name}: deleted spans older than {policy.days} days"
                    f" ({result.spans_deleted:,} of {total:,})",
                )
    return result


def ensure_partitions(store: Store, now: datetime | None = None) -> list[parts.DayPartition] | None:
    """Create the day partitions of today and the next days that are missing (the ones created);
    None where the trace tables are not partitioned (SQLite)."""
    if store.dialect != "postgresql":
        return None
    try:
        with store.write() as session:
            conn = session.connection()
            if not parts.is_partitioned(conn):
                return None
            return parts.ensure_ahead(conn, now or utcnow())
    except OperationalError as exc:  # queries held the tables past the lock timeout: next round
        if getattr(exc.orig, "sqlstate", None) != "55P03":
            raise
        log.warning("retention: trace partitions busy, made next round")
        return []


def _drop_expired_days(
    store: Store, every: list[ProjectRetention], now: datetime, result: RetentionResult
) -> None:
    """Drop each day partition that holds no span of a project still keeping that day.

    A project keeps a day unless the day ended before its cutoff; rows of projects no longer
    listed keep nothing. Scores go with the last span of their trace, roll-ups with their hours."""
    with store.session() as session:
        days = parts.day_partitions(session.connection())
    # The first day is dropped (even empty: `_before` takes its range); a later one is emptied,
    # and dropped once it is the first (fmops.store.partitions.drop_day).
    first = days[0].day if days else None
    for day in days:
        keepers = [p.project_id for p in every if (c := p.cutoff(now)) is None or c < day.end]
        expired = [p.project_id for p in every if p.project_id not in keepers]
        if not expired:
            break  # later days are kept by the same projects, or more
        try:
            with store.write() as session:
                conn = session.connection()
                if parts.has_rows_of(conn, day, keepers):
                    first = None  # kept: the days after it are no longer the first
                    continue
                spans = parts.count_rows(conn, day)
                if spans == 0 and day.day != first:
                    continue  # empty already
                orphaned = text(_ORPHANED_SCORES.format(day=day.name()))
                scores: Any = session.execute(orphaned, {"start": day.start, "end": day.end})
                for project_id in expired:
                    delete_before(session, project_id, day.end - timedelta(microseconds=1))
                if not parts.drop_day(conn, day):
                    raise _Busy  # undo the scores and roll-ups too: the next round retries it all
        except _Busy:
            log.warning("retention: day partition busy, not dropped", extra={"day": str(day.day)})
            continue
        if day.day == first:
            first = day.day + timedelta(days=1)
        result.spans_deleted += spans
        result.scores_deleted += int(scores.rowcount or 0)
        result.days_dropped += 1


class _Busy(Exception):
    """Queries held the trace tables past the lock timeout: the day is dropped next round."""


# The scores of traces with a span in the day and none outside it (the day's table name is ours).
_ORPHANED_SCORES = """
DELETE FROM scores s
WHERE EXISTS (SELECT 1 FROM {day} d WHERE d.project_id = s.project_id AND d.trace_id = s.trace_id)
AND NOT EXISTS (
    SELECT 1 FROM spans o WHERE o.project_id = s.project_id AND o.trace_id = s.trace_id
    AND (o.start_time < :start OR o.start_time >= :end)
)"""


class RetentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_days: StrictInt | None = Field(
        None, ge=0, le=36_500, description="Days for projects without their own; default: the setting"
    )


@job_kind(
    KIND,
    params=RetentionParams,
    # Admins may run it early; it covers every project, each by its own days, as the schedule does.
    description="Delete spans older than each project's retention days (and their scores), in every project",
    min_role=Role.admin,
)
def run_retention(ctx: JobContext, params: RetentionParams) -> dict[str, Any]:
    settings = ctx.settings
    days = settings.trace_retention_days if params.default_days is None else params.default_days
    store = Store(settings.database_url)
    try:
        done = enforce(store, default_days=days, progress=ctx.progress)
    finally:
        store.dispose()
    return {
        "spans_deleted": done.spans_deleted,
        "scores_deleted": done.scores_deleted,
        "projects": done.projects,
        "days_dropped": done.days_dropped,
    }


def enqueue_if_due(
    store: Store, *, interval: timedelta, default_days: int, now: datetime | None = None
) -> Job | None:
    """Queue a retention job when the last one is `interval` old and none is queued or running.

    The last job, or before the first one the oldest project (the first start), anchors the
    schedule in the database: restarting the server does not reset it, and replicas share it.
    """
    now = now or utcnow()
    with store.write() as session:
        if store.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEDULE_LOCK_ID})
        last = session.execute(
            select(Job.created_at, Job.status)
            .where(Job.kind == KIND)
            .order_by(Job.created_at.desc())
            .limit(1)
        ).first()
        home = session.execute(
            select(Project.id, Project.created_at).order_by(Project.created_at).limit(1)
        ).first()
        if home is None:
            return None  # no project yet: nothing to keep or delete
        if last is not None and not JobStatus(last.status).finished:
            return None
        anchor = home.created_at if last is None else last.created_at
        if now - anchor < interval:
            return None
        job = Job(
            project_id=home.id,
            kind=KIND,
            params={"default_days": default_days},
            max_attempts=1,  # the next round retries anyway
        )
        session.add(job)
    return job


class RetentionScheduler(Periodic):
    """Background service: checks the schedule every so often (at most a minute apart)."""

    task_name = "fmops-retention"
    failure_message = "could not queue the retention job; will retry"

    def __init__(self, store: Store, *, interval_seconds: float, default_days: int) -> None:
        super().__init__(min(interval_seconds, 60.0), wait_first=False)
        self.store = store
        self.schedule = timedelta(seconds=interval_seconds)
        self.default_days = default_days

    async def run_round(self) -> None:
        # Partitions ahead every round (a catalog read when they exist), not only hourly with the job.
        created = await asyncio.to_thread(ensure_partitions, self.store)
        if created:
            log.info("trace partitions created", extra={"days": [str(p.day) for p in created]})
        job = await asyncio.to_thread(
            enqueue_if_due, self.store, interval=self.schedule, default_days=self.default_days
        )
        if job is not None:
            log.info("retention job queued", extra={"job": job.id})
