"""`/console/optimizations`: prompt optimisation runs (issue 20), newest first, and one run's page:
its candidates with their scores on the optimisation and held-out cases, the held-out paired test,
the winner's diff against the start, and a form that starts an A/B experiment on an endpoint with
the pushed version (the endpoint's variants, as `PATCH /api/endpoints/{name}` sets them; its
experiment page reports and promotes). Runs are started with `fmops prompts optimize` or the API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.endpoints.service import EndpointService
from fmops.optimizers.service import OptimizeService, start_experiment
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go
from fmops.web.pages import console_page
from fmops.web.routers.console_evals_run import number
from fmops.web.templating import render

PAGE = console_page("/console/optimizations", "Prompt optimisation", "Evaluate", role=Role.engineer, order=30)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
RunId = Annotated[str, Path(pattern=r"^[0-9a-zA-Z]{1,32}$")]
ACTIVE = ("queued", "running")


def service(platform: Platform) -> OptimizeService:
    return OptimizeService(platform.store, platform.catalog, platform.jobs, lambda: platform.datasets)


def _diff_lines(text: str) -> list[tuple[str, str]]:
    kinds = []
    for line in text.splitlines(keepends=True):
        kind = "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx"
        kinds.append((kind, line))
    return kinds


def _index(platform: Platform, me: Principal) -> dict[str, Any]:
    return {"runs": service(platform).runs(me.project_id, limit=100), "number": number}


def _run(platform: Platform, me: Principal, run_id: str) -> dict[str, Any]:
    optimize = service(platform)
    run = optimize.get(me.project_id, run_id)
    progress, message = 1.0, ""
    if run.status in ACTIVE and run.job_id is not None:
        job = platform.jobs.get(run.job_id, me.project_id)
        progress, message = float(job.progress or 0.0), job.message or ""
    endpoints = [
        e.name
        for e in EndpointService(platform.store, platform.catalog, optimize.prompts).list(me.project_id)
        if e.config.prompt == run.prompt_name
    ]
    return {
        "run": run,
        "result": run.result or {},
        "candidates": optimize.candidates(me.project_id, run_id),
        "diff": _diff_lines(optimize.diff(me.project_id, run_id)),
        "endpoints": endpoints,
        "active": run.status in ACTIVE,
        "progress": progress,
        "message": message,
        "number": number,
    }


@router.get("")
async def index(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    context = await run_in_threadpool(_index, platform, me)
    return render(request, "console/optimizations/index.html", context)


@router.get("/{run_id}")
async def run_page(request: Request, platform: PlatformDep, me: WebPrincipal, run_id: RunId) -> Response:
    context = await run_in_threadpool(_run, platform, me, run_id)
    return render(request, "console/optimizations/run.html", context)


@router.post("/{run_id}/experiment")
async def experiment(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    run_id: RunId,
    endpoint: Annotated[str, Form(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")],
) -> Response:
    """Start an A/B experiment on `endpoint`: its current serving as control, the pushed version as
    `optimized`; then show the endpoint's experiment."""
    name = await run_in_threadpool(
        start_experiment, service(platform), me.project_id, run_id, endpoint, actor=me.user_name
    )
    return go(request, f"/console/endpoints/{name}")
