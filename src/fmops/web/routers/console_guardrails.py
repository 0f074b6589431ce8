"""`/console/guardrails`: the installed guardrails, and the project's policies that run them (add, apply
a YAML list, switch on or off, delete).

Every change goes through `GuardrailService`, as the REST routes and the CLI do, so the same checks
refuse the same mistakes (one message naming each bad field). A change made with HTMX answers with
the policies section re-rendered; a plain form post goes back to the page.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.endpoints.service import endpoint_names
from fmops.errors import UserError
from fmops.guardrails.policy import Action, Scope
from fmops.guardrails.registry import describe, guardrails
from fmops.guardrails.schemas import checked, load_policies
from fmops.platform import Platform
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import console_page
from fmops.web.templating import render

PAGE = console_page("/console/guardrails", "Guardrails", "Build", role=Role.engineer, order=50)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
Short = Annotated[str, Form(max_length=200)]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _data(platform: Platform, project_id: str) -> dict[str, Any]:
    with platform.store.session() as session:
        endpoints = sorted(endpoint_names(session, project_id))
    return {
        "policies": platform.guardrails.list(project_id),
        "guardrails": [describe(name, cls) for name, cls in sorted(guardrails().items())],
        "models": sorted(platform.catalog.models(project_id)),
        "endpoints": endpoints,
        "scopes": [s.value for s in Scope],
        "actions": [a.value for a in Action],
        "dumps": lambda value: orjson.dumps(value).decode(),
    }


async def _answer(request: Request, principal: Principal, message: str) -> Response:
    """HTMX: the policies section as now stored, with `message`; a plain form: back to the page."""
    if not is_htmx(request):
        return RedirectResponse(PAGE.path, status_code=303)
    data = await run_in_threadpool(_data, _platform(request), principal.project_id)
    return render(request, "console/guardrails/policies.html", {**data, "message": message})


def _config(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"config is not valid JSON: {exc}", param="config") from None
    if not isinstance(value, dict):
        raise UserError('config must be a JSON object, e.g. {"types": ["email"]}', param="config")
    return value


@router.get("")
async def guardrails_page(request: Request, principal: WebPrincipal) -> Response:
    data = await run_in_threadpool(_data, _platform(request), principal.project_id)
    return render(request, "console/guardrails/index.html", {**data, "message": None})


@router.post("")
async def add_policy(
    request: Request,
    principal: WebPrincipal,
    name: Annotated[str, Form(max_length=100)],
    guardrail: Annotated[str, Form(max_length=100)],
    scope: Annotated[str, Form(max_length=20)] = "project",
    target: Short = "",
    on: Annotated[str, Form(max_length=20)] = "input",
    action: Annotated[str, Form(max_length=20)] = "block",
    on_error: Annotated[str, Form(max_length=20)] = "closed",
    config: Annotated[str, Form(max_length=100_000)] = "",
    enabled: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    policy = checked(
        {
            "name": name.strip(),
            "guardrail": guardrail,
            "scope": scope,
            "target": target.strip() if scope != Scope.project.value else "",
            "on": on,
            "action": action,
            "on_error": on_error,
            "config": _config(config),
            "enabled": enabled is not None,
        }
    )
    service = _platform(request).guardrails
    view = await run_in_threadpool(
        lambda: service.create(principal.project_id, policy, actor=principal.user_name)
    )
    return await _answer(request, principal, f"Added the policy {view.label}.")


@router.post("/apply")
async def apply_policies(
    request: Request, principal: WebPrincipal, spec: Annotated[str, Form(max_length=1_000_000)]
) -> Response:
    policies = load_policies(spec, "the YAML")
    service = _platform(request).guardrails
    done = await run_in_threadpool(
        lambda: service.apply(principal.project_id, policies, actor=principal.user_name)
    )
    counts = {c: sum(d.change == c for d in done) for c in ("created", "updated", "unchanged")}
    said = ", ".join(f"{n} {c}" for c, n in counts.items() if n)
    return await _answer(request, principal, f"Applied {len(done)} policies: {said}.")


@router.post("/delete")
async def delete_policy(
    request: Request,
    principal: WebPrincipal,
    scope: Annotated[Scope, Form()],
    name: Annotated[str, Form(max_length=100)],
    target: Short = "",
) -> Response:
    service = _platform(request).guardrails
    view = await run_in_threadpool(
        lambda: service.delete(principal.project_id, scope, target, name, actor=principal.user_name)
    )
    return await _answer(request, principal, f"Deleted the policy {view.label}.")


@router.post("/enabled")
async def set_enabled(
    request: Request,
    principal: WebPrincipal,
    scope: Annotated[Scope, Form()],
    name: Annotated[str, Form(max_length=100)],
    enabled: Annotated[bool, Form()],
    target: Short = "",
) -> Response:
    service = _platform(request).guardrails
    view = await run_in_threadpool(
        lambda: service.set_enabled(
            principal.project_id, scope, target, name, enabled, actor=principal.user_name
        )
    )
    state = "runs again" if enabled else "is off: calls no longer run it"
    return await _answer(request, principal, f"The policy {view.label} {state}.")
