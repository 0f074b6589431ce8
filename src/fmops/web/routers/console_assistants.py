"""`/console/assistants`: endpoints published to the chat as assistants, each with its usage over a
window (conversations, answers, people, the thumbs given, evaluator scores), and the form that
publishes one. `?endpoint=` shows one endpoint's assistants (its page links here).

Every change goes through `AssistantService`, as the REST routes and the CLI do, so the same checks
refuse the same mistakes. A change made with HTMX answers with the section re-rendered; a plain form
post goes back to the page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fmops.assistants import AssistantService, AssistantSpec
from fmops.assistants.usage import DEFAULT_WINDOW, WINDOWS, usage, window
from fmops.auth import Principal, Role
from fmops.endpoints.schemas import validated
from fmops.endpoints.service import endpoint_names
from fmops.platform import Platform
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import console_page
from fmops.web.templating import render

PAGE = console_page("/console/assistants", "Assistants", "Build", role=Role.engineer, order=45)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
Short = Annotated[str, Form(max_length=200)]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _data(platform: Platform, project_id: str, endpoint: str | None, window_name: str) -> dict[str, Any]:
    span = window(window_name)
    views = AssistantService(platform.store).list(project_id, endpoint=endpoint or None)
    with platform.store.session() as session:
        endpoints = endpoint_names(session, project_id)
    rows = [(view, usage(platform.store, project_id, view.name, view.endpoint, span=span)) for view in views]
    return {
        "rows": rows,
        "endpoints": endpoints,
        "endpoint": endpoint or "",
        "window": window_name,
        "windows": list(WINDOWS),
        "roles": [r.value for r in Role],
    }


async def _answer(request: Request, principal: Principal, message: str, endpoint: str = "") -> Response:
    """HTMX: the assistants section as now stored, with `message`; a plain form: back to the page."""
    if not is_htmx(request):
        query = f"?{urlencode({'endpoint': endpoint})}" if endpoint else ""
        return RedirectResponse(PAGE.path + query, status_code=303)
    data = await run_in_threadpool(_data, _platform(request), principal.project_id, endpoint, DEFAULT_WINDOW)
    return render(request, "console/assistants/section.html", {**data, "message": message})


@router.get("")
async def assistants_page(
    request: Request,
    principal: WebPrincipal,
    endpoint: Annotated[str, Query(max_length=200)] = "",
    window_name: Annotated[str, Query(alias="window", max_length=10)] = DEFAULT_WINDOW,
) -> Response:
    data = await run_in_threadpool(_data, _platform(request), principal.project_id, endpoint, window_name)
    return render(request, "console/assistants/index.html", {**data, "message": None})


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.post("")
async def publish(
    request: Request,
    principal: WebPrincipal,
    name: Annotated[str, Form(max_length=100)],
    endpoint: Short,
    description: Annotated[str, Form(max_length=2000)] = "",
    starters: Annotated[str, Form(max_length=5000)] = "",
    users: Annotated[str, Form(max_length=5000)] = "",
    back: Short = "",
) -> Response:
    form = await request.form()
    roles = [str(r) for r in form.getlist("roles")][:10]
    spec = validated(
        AssistantSpec,
        {
            "name": name.strip(),
            "endpoint": endpoint.strip(),
            "description": description,
            "starters": _lines(starters),
            "roles": roles,
            "users": [u.strip() for u in users.replace("\n", ",").split(",") if u.strip()],
        },
    )
    service = AssistantService(_platform(request).store)
    change, view = await run_in_threadpool(
        lambda: service.publish(principal.project_id, spec, actor=principal.user_name)
    )
    said = {"created": "Published", "updated": "Updated", "unchanged": "Nothing changed for"}[change]
    return await _answer(request, principal, f"{said} the assistant {view.name}.", back)


@router.post("/delete")
async def unpublish(
    request: Request, principal: WebPrincipal, name: Annotated[str, Form(max_length=100)], back: Short = ""
) -> Response:
    service = AssistantService(_platform(request).store)
    view = await run_in_threadpool(service.unpublish, principal.project_id, name)
    return await _answer(request, principal, f"Took the assistant {view.name} out of the chat.", back)
