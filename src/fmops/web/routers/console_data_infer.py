"""`/console/data/{name}/infer`: the dataset page's batch-inference section. A form starts the same job
as `fmops data infer` and `POST /api/datasets/{name}/infer`, as the signed-in key; below it, this
dataset's inference jobs with their progress (polled while one runs) and the version each made.

The dataset page loads the section after it paints (`hx-trigger="load"`), so the page itself reads
no models, endpoints or prompts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.auth.sessions import password_member
from fmops.datasets.infer import KIND, default_output, submit
from fmops.datasets.service import NAME_PATTERN
from fmops.endpoints.service import EndpointService
from fmops.errors import FmopsError, UserError
from fmops.jobs import JobStatus
from fmops.platform import Platform, PlatformDep
from fmops.prompts.service import PromptService
from fmops.store.models import Job
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.templating import render

router = APIRouter(prefix="/console/data", include_in_schema=False, dependencies=web_gate(Role.engineer))
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
JOBS_LOOKED_AT = 200  # newest inference jobs of the project looked through for this dataset's
JOBS_SHOWN = 10
POLL_SECONDS = 2
FIELDS = ("version", "target", "prompt", "output", "max_tokens", "temperature")


def _jobs(platform: Platform, me: Principal, name: str) -> dict[str, Any]:
    versions = platform.datasets.list_versions(me.project_id, name)
    ids = {v.id: v for v in versions}
    query = (
        select(Job)
        .where(Job.project_id == me.project_id, Job.kind == KIND)
        .order_by(Job.created_at.desc())
        .limit(JOBS_LOOKED_AT)
    )
    with platform.store.session() as session:
        found = [j for j in session.scalars(query) if (j.params or {}).get("dataset") in ids]
    shown = found[:JOBS_SHOWN]
    return {
        "name": name,
        "jobs": [(j, ids[j.params["dataset"]]) for j in shown],
        "active": any(not JobStatus(j.status).finished for j in shown),
        "poll_seconds": POLL_SECONDS,
    }


def _section(platform: Platform, me: Principal, name: str, values: dict[str, str]) -> dict[str, Any]:
    prompts = PromptService(platform.store, platform.catalog)
    versions = platform.datasets.list_versions(me.project_id, name)
    if not versions:
        raise UserError(f"dataset {name!r} has no versions", param="name")
    return {
        **_jobs(platform, me, name),
        "versions": versions,
        "models": sorted(platform.catalog.models(me.project_id)),
        "endpoints": [
            e.name for e in EndpointService(platform.store, platform.catalog, prompts).list(me.project_id)
        ],
        "prompts": prompts.list(me.project_id),
        "default_output": default_output(versions[0]),
        "values": values,
        "error": "",
    }


def _number(values: dict[str, str], field: str, kind: type[int] | type[float]) -> Any:
    text = values.get(field, "")
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{field.replace('_', ' ')} must be a number, not {text!r}", param=field) from None


def _start(platform: Platform, me: Principal, name: str, values: dict[str, str]) -> str:
    kind, _, target = values.get("target", "").partition(":")
    if kind not in ("model", "endpoint") or not target:
        raise UserError("choose a model or an endpoint to answer with", param="target")
    version = values.get("version", "")
    job = submit(
        platform.store,
        platform.settings,
        platform.jobs,
        platform.datasets,
        project_id=me.project_id,
        dataset=f"{name}@{version}" if version else name,
        created_by_key_id=me.key_id,
        member_user_id=password_member(me),
        model=target if kind == "model" else None,
        endpoint=target if kind == "endpoint" else None,
        prompt=values.get("prompt") or None,
        output=values.get("output") or None,
        parameters={
            "max_tokens": _number(values, "max_tokens", int),
            "temperature": _number(values, "temperature", float),
        },
    )
    return job.id


@router.get("/{name}/infer")
async def infer_section(request: Request, platform: PlatformDep, me: WebPrincipal, name: Name) -> Response:
    context = await run_in_threadpool(_section, platform, me, name, {})
    return render(request, "console/data/_infer.html", context)


@router.get("/{name}/infer/jobs")
async def infer_jobs(request: Request, platform: PlatformDep, me: WebPrincipal, name: Name) -> Response:
    context = await run_in_threadpool(_jobs, platform, me, name)
    return render(request, "console/data/_infer_jobs.html", context)


@router.post("/{name}/infer")
async def infer_start(request: Request, platform: PlatformDep, me: WebPrincipal, name: Name) -> Response:
    form = await request.form()
    values = {k: v.strip() for k in FIELDS if isinstance(v := form.get(k), str)}
    try:
        await run_in_threadpool(_start, platform, me, name, values)
    except FmopsError as exc:
        if not is_htmx(request):
            raise
        # The section again, as it was sent, with what to fix.
        context = await run_in_threadpool(_section, platform, me, name, values)
        context["error"] = exc.message
        return render(request, "console/data/_infer.html", context, status=exc.status_code)
    if not is_htmx(request):
        return go(request, f"/console/data/{name}")
    context = await run_in_threadpool(_section, platform, me, name, {})
    return render(request, "console/data/_infer.html", context, status=201)
