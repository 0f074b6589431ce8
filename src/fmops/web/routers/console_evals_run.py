"""`/console/evals/runs/{id}`: one eval run — its status and progress (live while it runs), the aggregates
per target and scorer with their 95% bootstrap intervals, cost and latency per target, errors counted
apart from wrong answers, and the per-case table (input, expected, each target's output and scores),
filtered to disagreements or failures (`fmops.evals.browse`) and paged.

While the run is queued or running, the live part and the table ask for themselves again every two
seconds (HTMX) and stop once it has finished. Resume calls the same `EvalService.resume` as
`fmops eval resume` and the API, behind the same role.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.evals import KIND
from fmops.evals.browse import FILTERS, CaseFilter, cases
from fmops.jobs import get_kind
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go
from fmops.web.routers.console_evals import ACTIVE, PAGE, evals, progress_of
from fmops.web.templating import render

router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
RunId = Annotated[str, Path(pattern=r"^[0-9a-zA-Z]{1,32}$")]
CASES_PER_PAGE = 25
POLL_SECONDS = 2
TEXT_SHOWN = 600  # characters of an input, expected value or output before "more"


def as_text(value: Any) -> str:
    """A case's input, expected value or output as a person reads it (JSON for anything not a string)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def interval(ci: Any) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


HELPERS = {"as_text": as_text, "number": number, "interval": interval, "text_shown": TEXT_SHOWN}


def _live(platform: Platform, me: Principal, run_id: str) -> dict[str, Any]:
    service = evals(platform)
    run = service.get_run(me.project_id, run_id)
    progress, message = progress_of(platform, run)
    summary = service.summary(me.project_id, run_id) if run.status != "queued" else None
    return {
        "run": run,
        "suite": run.definition["suite"],
        "summary": summary,
        "active": run.status in ACTIVE,
        "progress": progress,
        "message": message,
        "poll_seconds": POLL_SECONDS,
        "can_resume": run.status in ("failed", "cancelled"),
        **HELPERS,
    }


def _cases(platform: Platform, me: Principal, run_id: str, which: CaseFilter, page: int) -> dict[str, Any]:
    service = evals(platform)
    run = service.get_run(me.project_id, run_id)
    suite = run.definition["suite"]
    found = cases(service.rows(run_id), suite, which)
    pages = max(1, -(-len(found) // CASES_PER_PAGE))
    page = min(page, pages)
    return {
        "run": run,
        "targets": [t["name"] for t in suite["targets"]],
        "scorers": [s["name"] for s in suite["scorers"]],
        "cases": found[(page - 1) * CASES_PER_PAGE : page * CASES_PER_PAGE],
        "matched": len(found),
        "filter": which,
        "filters": FILTERS,
        "page": page,
        "pages": pages,
        "active": run.status in ACTIVE,
        "poll_seconds": POLL_SECONDS,
        **HELPERS,
    }


Filter = Annotated[CaseFilter, Query(alias="filter")]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]


@router.get("/runs/{run_id}")
async def run_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    run_id: RunId,
    which: Filter = "all",
    page: PageNumber = 1,
) -> Response:
    context = await run_in_threadpool(_live, platform, me, run_id)
    context["table"] = await run_in_threadpool(_cases, platform, me, run_id, which, page)
    return render(request, "console/evals/run.html", context)


@router.get("/runs/{run_id}/live")
async def live(request: Request, platform: PlatformDep, me: WebPrincipal, run_id: RunId) -> Response:
    """The part of the page that changes while the run goes (asked for by the page every 2 s)."""
    context = await run_in_threadpool(_live, platform, me, run_id)
    return render(request, "console/evals/_live.html", context)


@router.get("/runs/{run_id}/cases")
async def case_table(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    run_id: RunId,
    which: Filter = "all",
    page: PageNumber = 1,
) -> Response:
    """The per-case table alone: a filter or a page chosen, or its refresh while the run goes."""
    context = await run_in_threadpool(_cases, platform, me, run_id, which, page)
    return render(request, "console/evals/_cases.html", {"table": context, **HELPERS})


@router.get("/runs/{run_id}/export")
async def export(
    platform: PlatformDep,
    me: WebPrincipal,
    run_id: RunId,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> Response:
    """Every result of the run as a file: the same CSV (a column per scorer) or JSON as the API's export."""
    text = await run_in_threadpool(evals(platform).export, me.project_id, run_id, format)
    media = "text/csv" if format == "csv" else "application/json"
    disposition = f'attachment; filename="eval-{run_id}.{format}"'
    return Response(text, media_type=media, headers={"Content-Disposition": disposition})


@router.post("/runs/{run_id}/resume")
async def resume(request: Request, platform: PlatformDep, me: WebPrincipal, run_id: RunId) -> Response:
    """A new job for a failed or cancelled run; it keeps the results stored and runs the rest."""
    me.require(get_kind(KIND).min_role, "run evals")
    await run_in_threadpool(evals(platform).resume, me.project_id, run_id)
    return go(request, f"{PAGE.path}/runs/{run_id}")
