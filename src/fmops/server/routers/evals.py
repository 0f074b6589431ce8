"""Eval runs of the caller's project: start a suite (a job the server's workers run), list and read
runs with their aggregates, page through per-case results, compare, export, resume.

A suite with problems is one 400 listing them all (`error.message`), before anything is queued.
Everything needs an engineer key: evals call models on the project's budget and show its data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam
from pydantic import Field

from fmops.artifacts import ArtifactStore
from fmops.auth import Role
from fmops.datasets import DatasetService
from fmops.evals import KIND, EvalService
from fmops.jobs import get_kind
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import NO_NUL, PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.base import Input, Output, Page
from fmops.store.models import EvalRun

router = APIRouter(prefix="/api/evals", tags=["evals"], dependencies=gate(Role.engineer))
RunId = PathParam(pattern=r"^[0-9a-zA-Z]{1,32}$", description="The run's id")


class RunRequest(Input):
    suite: dict[str, Any] | str = Field(
        description="The suite: {name, cases, targets, scorers, concurrency, seed} as JSON, or its YAML text",
        examples=[
            {
                "name": "greeting",
                "cases": [{"input": "Say hello", "expected": "Hello"}],
                "targets": [{"model": "smollm2-135m-instruct"}],
                "scorers": [{"name": "regex", "config": {"pattern": "(?i)hello"}, "threshold": 0.8}],
            }
        ],
    )
    concurrency: int | None = Field(None, ge=1, le=256, description="Calls in flight (default: the suite's)")


class RunPublic(Output):
    id: str
    suite: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    job_id: str | None = None
    cases: int
    targets: int
    definition: dict[str, Any] = Field(description="The suite as it ran: dataset version, prompt versions")
    summary: dict[str, Any] | None = Field(
        None, description="Per target: score and scorers with 95% bootstrap intervals, errors, latency, cost"
    )
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class ResultPublic(Output):
    case_index: int
    target_index: int
    target: str
    status: str = Field(description="ok, or error (the target failed: not a wrong answer)")
    input: Any = None
    expected: Any = None
    output: str | None = None
    error: str | None = None
    scores: dict[str, Any] = Field(description="Each scorer's {value, label, comment}")
    score: float | None = Field(None, description="The weighted mean of the scorers' values")
    latency_ms: float | None = None
    cost: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached: bool
    trace_id: str | None = None


class ResultPage(Output):
    data: list[ResultPublic]
    total: int


def evals(platform: Platform) -> EvalService:
    return EvalService(
        platform.store,
        platform.catalog,
        platform.jobs,
        lambda: DatasetService(platform.store, ArtifactStore.from_settings(platform.settings)),
    )


def run_public(run: EvalRun) -> RunPublic:
    return RunPublic(
        id=run.id,
        suite=run.suite_name,
        status=run.status,
        job_id=run.job_id,
        cases=run.cases,
        targets=run.targets,
        definition=run.definition,
        summary=run.summary,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


@router.post(
    "/runs", response_model=RunPublic, status_code=201, summary="Check a suite and start a run (a job)"
)
def start(body: RunRequest, platform: PlatformDep, principal: PrincipalDep) -> RunPublic:
    principal.require(get_kind(KIND).min_role, "run evals")
    run = evals(platform).start(
        principal.project_id, body.suite, created_by_key_id=principal.key_id, concurrency=body.concurrency
    )
    return run_public(run)


@router.get("/runs", response_model=Page[RunPublic], summary="Eval runs, newest first")
def list_runs(
    platform: PlatformDep,
    principal: PrincipalDep,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(
        None, max_length=32, pattern=NO_NUL, description="next_cursor of the previous page"
    ),
) -> Page[RunPublic]:
    runs = evals(platform).list_runs(principal.project_id, limit=limit, before=cursor)
    next_cursor = runs[-1].id if len(runs) == limit else None
    return Page[RunPublic](data=[run_public(r) for r in runs], next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunPublic, summary="A run and its aggregates")
def get_run(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> RunPublic:
    service = evals(platform)
    run = service.get_run(principal.project_id, run_id)
    public = run_public(run)
    if public.summary is None and run.status != "queued":  # still going: aggregates of what is stored
        public.summary = service.summary(principal.project_id, run_id)
    return public


@router.get("/runs/{run_id}/results", response_model=ResultPage, summary="A run's per-case results")
def results(
    platform: PlatformDep,
    principal: PrincipalDep,
    run_id: str = RunId,
    status: Literal["ok", "error"] | None = Query(None, description="Only results with this status"),
    offset: int = Query(0, ge=0, le=10_000_000),
    limit: int = Query(100, ge=1, le=1000),
) -> ResultPage:
    service = evals(platform)
    run = service.get_run(principal.project_id, run_id)
    names = [t["name"] for t in run.definition["suite"]["targets"]]
    rows, total = service.results(principal.project_id, run_id, status=status, offset=offset, limit=limit)
    data = [ResultPublic.model_validate({**r, "target": names[r["target_index"]]}) for r in rows]
    return ResultPage(data=data, total=total)


@router.get(
    "/runs/{run_id}/compare",
    response_model=list[dict[str, Any]],
    summary="Paired tests: the run's targets pairwise, or target by target against the run `against`",
)
def compare(
    platform: PlatformDep,
    principal: PrincipalDep,
    run_id: str = RunId,
    against: str | None = Query(
        None, pattern=r"^[0-9a-zA-Z]{1,32}$", description="The baseline run: this run is compared with it"
    ),
) -> list[dict[str, Any]]:
    service = evals(platform)
    if against is None:
        return service.compare(principal.project_id, run_id)
    return service.compare(principal.project_id, against, run_id)


@router.get(
    "/runs/{run_id}/export",
    summary="Every result of the run as CSV (a column per scorer) or JSON",
    responses={200: {"description": "The file", "content": {"text/csv": {}, "application/json": {}}}},
    response_class=Response,
)
def export(
    platform: PlatformDep,
    principal: PrincipalDep,
    run_id: str = RunId,
    format: Literal["csv", "json"] = Query("csv"),
) -> Response:
    text = evals(platform).export(principal.project_id, run_id, format)
    media = "text/csv" if format == "csv" else "application/json"
    return Response(
        text, media_type=media, headers={"Content-Disposition": f'attachment; filename="{run_id}.{format}"'}
    )


@router.post(
    "/runs/{run_id}/resume",
    response_model=RunPublic,
    status_code=201,
    summary="Resume a stopped run (a new job; the results it has are kept)",
    responses=error_responses(409),
)
def resume(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> RunPublic:
    principal.require(get_kind(KIND).min_role, "run evals")
    return run_public(evals(platform).resume(principal.project_id, run_id))
