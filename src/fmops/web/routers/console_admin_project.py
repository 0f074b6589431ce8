"""`/console/admin/project`: the project's budget, rate limits and trace retention (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.pages import console_page
from fmops.web.routers.console_admin_forms import answer, limit_changes, optional_int
from fmops.web.templating import render

PAGE = console_page("/console/admin/project", "Project", "Admin", role=Role.admin, order=30)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.admin))

_PAGE, _PANEL = "console/admin/project.html", "console/admin/project_panel.html"
Text = Annotated[str, Form(max_length=100)]


async def _context(platform: Platform, principal: Principal) -> dict[str, Any]:
    project, _ = await run_in_threadpool(platform.auth.get_project, principal, principal.project_id)
    return {"project": project, "default_retention": platform.settings.trace_retention_days}


@router.get("")
async def project_page(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    return render(request, _PAGE, {**await _context(platform, principal), "message": None})


@router.post("")
async def save_project(
    request: Request,
    platform: PlatformDep,
    principal: WebPrincipal,
    rpm: Text = "",
    tpm: Text = "",
    budget: Text = "",
    budget_period: Text = "month",
    retention_days: Text = "",
) -> Response:
    # Both checked before either is written: a bad field changes nothing.
    changes = limit_changes(rpm, tpm, budget, budget_period)
    days = optional_int(retention_days, "retention_days", high=36_500)

    def save() -> None:
        platform.auth.set_project_limits(principal, changes)
        platform.auth.set_retention(principal, days)

    await run_in_threadpool(save)
    return answer(request, _PAGE, _PANEL, await _context(platform, principal), "project settings saved")
