"""`/console/evals/compare`: two runs (target by target) or two targets of one run side by side, with the
paired test the service computes (exact McNemar for pass/fail scores, Wilcoxon signed-rank for graded
ones) and the cases whose outcome changed; and `/console/evals/runs/{id}/select`: the model-selection
view of a run — quality against latency and against cost with the 95% intervals drawn, and the
ranking and recommendation of `fmops select` (`fmops.evals.select.rank`, not recomputed here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import UserError
from fmops.evals.browse import changes
from fmops.evals.select import rank
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.routers.console_evals import PAGE, evals
from fmops.web.routers.console_evals_chart import scatter
from fmops.web.routers.console_evals_run import HELPERS, RunId
from fmops.web.templating import render

router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
CHANGES_SHOWN = 200
RUNS_OFFERED = 50

OptionalRun = Annotated[str, Query(max_length=32, pattern=r"^[0-9a-zA-Z]*$")]
TargetName = Annotated[str, Query(max_length=200)]


def _target(names: list[str], chosen: str, default: int, param: str) -> int:
    if not chosen:
        return min(default, len(names) - 1)
    if chosen not in names:
        raise UserError(
            f"{param}: the run has no target {chosen!r} (its targets: {', '.join(names)})", param=param
        )
    return names.index(chosen)


def _compare(
    platform: Platform, me: Principal, a: str, b: str, target_a: str, target_b: str
) -> dict[str, Any]:
    service = evals(platform)
    runs = service.list_runs(me.project_id, limit=RUNS_OFFERED)
    context: dict[str, Any] = {"runs": runs, "a": a, "b": b, "tests": [], "changes": [], "run_a": None}
    if not a:
        return context
    run_a = service.get_run(me.project_id, a)
    run_b = service.get_run(me.project_id, b) if b and b != a else run_a
    names_a = [t["name"] for t in run_a.definition["suite"]["targets"]]
    names_b = [t["name"] for t in run_b.definition["suite"]["targets"]]
    rows_a = service.rows(run_a.id)
    if run_b is run_a:
        if len(names_a) < 2:
            raise UserError(f"run {a} has one target: choose a second run to compare it with", param="b")
        index_a = _target(names_a, target_a, 0, "target_a")
        index_b = _target(names_a, target_b, 1, "target_b")
        if index_a == index_b:
            raise UserError("choose two different targets of the run", param="target_b")
        pair = {names_a[index_a], names_a[index_b]}
        tests = [t for t in service.compare(me.project_id, a) if {t["a"], t["b"]} == pair]
        rows_b = rows_a
    else:
        shared = [n for n in names_b if n in names_a]
        if not shared:
            raise UserError(f"runs {a} and {b} share no target name: nothing to pair", param="b")
        index_a = _target(names_a, target_a or shared[0], 0, "target_a")
        index_b = _target(names_b, target_b or names_a[index_a], 0, "target_b")
        tests = service.compare(me.project_id, a, run_b.id)
        rows_b = service.rows(run_b.id)
    found = changes(rows_a, index_a, rows_b, index_b)
    context.update(
        run_a=run_a,
        run_b=run_b,
        same_run=run_b is run_a,
        names_a=names_a,
        names_b=names_b,
        target_a=names_a[index_a],
        target_b=names_b[index_b] if run_b is not run_a else names_a[index_b],
        tests=tests,
        changes=found[:CHANGES_SHOWN],
        changed=len(found),
        better=sum(1 for c in found if c.diff is not None and c.diff > 0),
        worse=sum(1 for c in found if c.diff is not None and c.diff < 0),
    )
    return context


@router.get("/compare")
async def compare_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    a: OptionalRun = "",
    b: OptionalRun = "",
    target_a: TargetName = "",
    target_b: TargetName = "",
) -> Response:
    """`?a=RUN&b=RUN`: b against a, target by target; `?a=RUN&target_a=X&target_b=Y`: two targets of a."""
    context = await run_in_threadpool(_compare, platform, me, a, b, target_a, target_b)
    return render(request, "console/evals/compare.html", {**context, **HELPERS})


def _select(platform: Platform, me: Principal, run_id: str) -> dict[str, Any]:
    service = evals(platform)
    run = service.get_run(me.project_id, run_id)
    if run.targets < 2:
        raise UserError(
            f"run {run_id} has one target: a selection compares two or more candidates", param="run_id"
        )
    licences = {alias: entry.license for alias, entry in platform.catalog.models(me.project_id).items()}
    ranked = rank(service.summary(me.project_id, run_id), service.compare(me.project_id, run_id), licences)
    recommended = ranked["recommended"] if run.status == "succeeded" else None
    return {
        "run": run,
        "ranked": ranked,
        "final": run.status == "succeeded",
        "charts": [
            scatter(ranked["ranking"], "p50_ms", "latency", "median latency (ms)", recommended),
            scatter(ranked["ranking"], "cost_per_case", "cost", "cost per case", recommended),
        ],
    }


@router.get("/runs/{run_id}/select")
async def select_page(request: Request, platform: PlatformDep, me: WebPrincipal, run_id: RunId) -> Response:
    context = await run_in_threadpool(_select, platform, me, run_id)
    return render(request, "console/evals/select.html", {**context, **HELPERS})
