"""Background jobs of the caller's project: submit a registered kind, follow, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Query

from fmops.auth import Role
from fmops.jobs import JobStatus, get_kind, kinds
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.base import Page
from fmops.server.schemas.jobs import JobCreate, JobKindPublic, JobLogLine, JobPublic

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=gate(Role.engineer))


@router.get("/kinds", response_model=list[JobKindPublic], summary="Job kinds this server can run")
def list_kinds() -> list[JobKindPublic]:
    return [
        JobKindPublic(
            name=k.name,
            description=k.description,
            min_role=k.min_role,
            params_schema=k.params.model_json_schema() if k.params else None,
        )
        for k in sorted(kinds().values(), key=lambda k: k.name)
    ]


@router.post("", response_model=JobPublic, status_code=201, summary="Queue a job of a registered kind")
def submit_job(body: JobCreate, platform: PlatformDep, principal: PrincipalDep) -> JobPublic:
    kind = get_kind(body.kind)
    principal.require(kind.min_role, f"run {kind.name} jobs")
    parsed = kind.parse(body.params)
    params = parsed.model_dump(mode="json") if parsed is not None else {}
    job = platform.jobs.submit(
        kind.name, params, project_id=principal.project_id, created_by_key_id=principal.key_id
    )
    return JobPublic.model_validate(job)


@router.get("", response_model=Page[JobPublic], summary="Jobs, newest first")
def list_jobs(
    platform: PlatformDep,
    principal: PrincipalDep,
    status: JobStatus | None = None,
    kind: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=32, description="next_cursor of the previous page"),
) -> Page[JobPublic]:
    jobs = platform.jobs.find(
        project_id=principal.project_id, status=status, kind=kind, limit=limit, before=cursor
    )
    next_cursor = jobs[-1].id if len(jobs) == limit else None
    return Page[JobPublic](data=[JobPublic.model_validate(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, platform: PlatformDep, principal: PrincipalDep) -> JobPublic:
    return JobPublic.model_validate(platform.jobs.get(job_id, principal.project_id))


@router.get("/{job_id}/logs", response_model=list[JobLogLine], summary="Log lines after the given id")
def job_logs(
    job_id: str,
    platform: PlatformDep,
    principal: PrincipalDep,
    after: int = Query(0, ge=0, le=2**62),
    limit: int = Query(1000, ge=1, le=10_000),
) -> list[JobLogLine]:
    lines = platform.jobs.logs(job_id, principal.project_id, after=after, limit=limit)
    return [JobLogLine.model_validate(x) for x in lines]


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    summary="Cancel a queued or running job",
    responses=error_responses(409),
)
def cancel_job(job_id: str, platform: PlatformDep, principal: PrincipalDep) -> JobPublic:
    return JobPublic.model_validate(platform.jobs.cancel(job_id, principal.project_id))
