"""Retention: spans older than their project's `retention_days` are deleted, so storage stays bounded.

A project's days come from `Project.retention_days`, or the `trace_retention_days` setting when it
has none; 0 keeps traces forever. Scores go with the last span of their trace.

The `traces.retention` job deletes in chunks, each its own short transaction: on SQLite a chunk
holds the write lock for some tens of milliseconds and then pauses as long, so the trace writer and
the API keep writing while it runs. `RetentionScheduler`, a background service of the server,
queues that job every `retention_interval_seconds` unless one is already queued or running.

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

from fmops.auth.roles import Role
from fmops.jobs import JobContext, JobStatus, job_kind
from fmops.periodic import Periodic
from fmops.stats.rollup import delete_before
from fmops.store import Store, utcnow
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
        mine = delete(Span).where(Span.project_id == policy.project_id, Span.span_id.in_(some))
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
    expiring = [(p, c) for p in policies(store, default_days) if (c := p.cutoff(now)) is not None]
    result.projects = len(expiring)
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
        job = await asyncio.to_thread(
            enqueue_if_due, self.store, interval=self.schedule, default_days=self.default_days
        )
        if job is not None:
            log.info("retention job queued", extra={"job": job.id})
