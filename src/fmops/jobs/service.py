"""The durable job table: submit, list, cancel; and the claim/heartbeat/finish protocol workers follow.

States: queued -> running -> succeeded | failed | cancelled. A running job whose heartbeat stops
(its worker died) is queued again while attempts remain, else failed; see `reap_stale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from fmops.auth.principal import Principal
from fmops.errors import Conflict, NotFound, UserError
from fmops.store import Store, utcnow
from fmops.store.models import Job, JobLog

MAX_LOG_LINE = 4000


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    kind: str
    project_id: str
    params: dict[str, Any]
    state: dict[str, Any] | None
    attempt: int


class JobService:
    def __init__(self, store: Store, *, max_attempts: int = 3) -> None:
        self.store = store
        self.max_attempts = max_attempts

    # --- what users do ------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        project_id: str,
        created_by_key_id: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        with self.store.session() as session:
            job = Job(
                project_id=project_id,
                kind=kind,
                params=params,
                max_attempts=max_attempts or self.max_attempts,
                created_by_key_id=created_by_key_id,
            )
            session.add(job)
        return job

    def get(self, job_id: str, project_id: str | None) -> Job:
        with self.store.session() as session:
            job = session.get(Job, job_id)
        if job is None or (project_id is not None and job.project_id != project_id):
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def find(
        self,
        *,
        project_id: str | None,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[Job]:
        """Newest first; `before` is the id of the last job of the previous page (ids sort by time)."""
        if not 1 <= limit <= 500:
            raise UserError("limit must be between 1 and 500", param="limit")
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        if status is not None:
            query = query.where(Job.status == status)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if before is not None:
            query = query.where(Job.id < before)
        with self.store.session() as session:
            return list(session.scalars(query))

    def logs(self, job_id: str, project_id: str | None, *, after: int = 0, limit: int = 1000) -> list[JobLog]:
        self.get(job_id, project_id)
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(JobLog)
                    .where(JobLog.job_id == job_id, JobLog.id > after)
                    .order_by(JobLog.id)
                    .limit(limit)
                )
            )

    def cancel(self, job_id: str, project_id: str | None) -> Job:
        """Queued jobs stop at once; running ones are asked to stop and end as cancelled."""
        with self.store.write() as session:
            job = session.get(Job, job_id)
            if job is None or (project_id is not None and job.project_id != project_id):
                raise NotFound(f"no job with id {job_id!r}")
            status = JobStatus(job.status)
            if status.finished:
                raise Conflict(f"job {job_id} already {status}; nothing to cancel")
            if status == JobStatus.queued:
                job.status = JobStatus.cancelled
                job.finished_at = utcnow()
                job.message = "cancelled before it started"
            else:
                job.cancel_requested = True
        return job

    def check_access(self, principal: Principal, job_id: str) -> Job:
        return self.get(job_id, principal.project_id)

    # --- what workers do ----------------------------------------------------------------------

    def claim(self, worker_id: str, kinds: list[str]) -> Claimed | None:
        if not kinds:
            return None
        now = utcnow()
        with self.store.write() as session:
            job = session.scalars(
                select(Job)
                .where(Job.status == JobStatus.queued, Job.kind.in_(kinds))
                .order_by(Job.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            job.status = JobStatus.running
            job.attempts += 1
            job.worker_id = worker_id
            job.started_at = job.started_at or now
            job.heartbeat_at = now
            job.cancel_requested = False
            return Claimed(job.id, job.kind, job.project_id, dict(job.params), job.state, job.attempts)

    def heartbeat(self, job_id: str, worker_id: str) -> bool | None:
        """Refresh the heartbeat; returns cancel_requested, or None when the job is no longer ours."""
        with self.store.session() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
                .values(heartbeat_at=utcnow())
                .returning(Job.cancel_requested)
            ).first()
        return None if result is None else bool(result[0])

    def set_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        values: dict[str, Any] = {"progress": fraction, "heartbeat_at": utcnow()}
        if message is not None:
            values["message"] = message[:MAX_LOG_LINE]
        with self.store.session() as session:
            session.execute(
                update(Job).where(Job.id == job_id, Job.status == JobStatus.running).values(**values)
            )

    def save_state(self, job_id: str, state: dict[str, Any]) -> None:
        with self.store.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=state, heartbeat_at=utcnow()))

    def append_log(self, job_id: str, line: str, level: str = "info") -> None:
        with self.store.session() as session:
            session.add(JobLog(job_id=job_id, line=line[:MAX_LOG_LINE], level=level))

    def finish(
        self,
        job_id: str,
        worker_id: str,
        status: JobStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Record the outcome if the job is still ours; False when it was reaped meanwhile."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "result": result, "error": error}
        if status == JobStatus.succeeded:
            values["progress"] = 1.0
        if message is not None:
            values["message"] = message
        with self.store.session() as session:
            done = cast(
                CursorResult[Any],
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
                    .values(**values)
                ),
            )
        return bool(done.rowcount)

    def requeue(self, job_id: str, worker_id: str, *, reason: str, count_attempt: bool) -> bool:
        """Put a running job back in the queue (shutdown, transient error); attempts permitting."""
        with self.store.write() as session:
            job = session.get(Job, job_id)
            if job is None or job.worker_id != worker_id or job.status != JobStatus.running:
                return False
            if not count_attempt:
                job.attempts = max(0, job.attempts - 1)
            if job.attempts >= job.max_attempts:
                job.status = JobStatus.failed
                job.finished_at = utcnow()
                job.error = f"{reason}; gave up after {job.attempts} attempts"
            else:
                job.status = JobStatus.queued
                job.message = reason
            job.worker_id = None
        return True

    def reap_stale(self, stale_after: timedelta) -> list[tuple[str, JobStatus]]:
        """Jobs whose worker stopped heart-beating: queued again, failed, or (if asked) cancelled."""
        cutoff: datetime = utcnow() - stale_after
        changed: list[tuple[str, JobStatus]] = []
        with self.store.write() as session:
            stale = session.scalars(
                select(Job)
                .where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
                .with_for_update(skip_locked=True)
            ).all()
            for job in stale:
                lost = f"worker {job.worker_id} stopped responding"
                job.worker_id = None
                if job.cancel_requested:
                    job.status, job.finished_at, job.message = JobStatus.cancelled, utcnow(), "cancelled"
                elif job.attempts >= job.max_attempts:
                    job.status, job.finished_at = JobStatus.failed, utcnow()
                    job.error = f"{lost}; gave up after {job.attempts} attempts"
                else:
                    job.status, job.message = JobStatus.queued, f"{lost}; retrying"
                session.add(JobLog(job_id=job.id, line=job.error or job.message or "", level="warning"))
                changed.append((job.id, JobStatus(job.status)))
        return changed
