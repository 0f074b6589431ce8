"""`/console/endpoints`: the endpoints of the project, one endpoint's deployment and its A/B experiment.

Every change goes through `EndpointService` and `experiments.promote`, as the REST routes do. A
change made from the detail page answers with the page's body (HTMX swaps it), so the weights, the
variants and the results shown are always those stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.endpoints import experiments
from fmops.endpoints.schemas import NAME_PATTERN, EndpointSpec, EndpointUpdate, validated
from fmops.endpoints.service import EndpointService
from fmops.errors import Conflict, NotFound, UserError
from fmops.platform import Platform
from fmops.prompts.service import PromptService
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import console_page
from fmops.web.routers.console_traces_view import money
from fmops.web.templating import render

router = APIRouter(prefix="/console/endpoints", include_in_schema=False, dependencies=web_gate(Role.engineer))
PAGE = console_page("/console/endpoints", "Endpoints", "Build", role=Role.engineer, order=40)
Name = Path(pattern=NAME_PATTERN)
Text = Annotated[str, Form(max_length=2000)]


def _service(request: Request) -> EndpointService:
    platform: Platform = request.app.state.platform
    return EndpointService(platform.store, platform.catalog, PromptService(platform.store, platform.catalog))


def _list_data(service: EndpointService, project_id: str) -> dict[str, Any]:
    return {
        "endpoints": service.list(project_id),
        "prompts": service.prompts.list(project_id),
        "models": sorted(service.catalog.models(project_id)),
    }


@router.get("")
async def endpoints(request: Request, principal: WebPrincipal) -> Response:
    data = await run_in_threadpool(_list_data, _service(request), principal.project_id)
    return render(request, "console/endpoints/list.html", data)


def _form_spec(
    name: str, prompt: str, label: str, version: str, model: str, description: str
) -> EndpointSpec:
    data: dict[str, Any] = {"name": name.strip()}
    for key, value in (("prompt", prompt), ("label", label), ("model", model), ("description", description)):
        if value.strip():
            data[key] = value.strip()
    if version.strip():
        data["version"] = _whole(version, "version")
    return validated(EndpointSpec, data)


def _whole(text: str, field: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(f"{field} must be a whole number, not {text.strip()[:40]!r}", param=field) from None


@router.post("")
async def create_endpoint(
    request: Request,
    principal: WebPrincipal,
    name: Annotated[str, Form(max_length=100)],
    prompt: Annotated[str, Form(max_length=100)] = "",
    label: Annotated[str, Form(max_length=100)] = "",
    version: Annotated[str, Form(max_length=20)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    description: Text = "",
) -> Response:
    spec = _form_spec(name, prompt, label, version, model, description)
    service = _service(request)
    await run_in_threadpool(
        lambda: service.create(principal.project_id, spec, actor=principal.user_name, key_id=principal.key_id)
    )
    return go(request, f"/console/endpoints/{spec.name}")


def _detail_data(service: EndpointService, principal: Principal, name: str) -> dict[str, Any]:
    project = principal.project_id
    view = service.get(project, name)
    config = view.config
    served = None
    versions: list[Any] = []
    if config.prompt is not None:
        try:
            served = service.prompts.get(project, config.prompt, version=config.version, label=config.label)
            versions = service.prompts.versions(project, config.prompt)
        except NotFound:
            served = None  # the label was removed since: the page says so instead of failing
    report = None
    if config.variants:
        try:
            report = experiments.report(service.store, project, name)
        except Conflict:
            report = None
    return {
        "endpoint": view,
        "config": config,
        "served": served,
        "versions": versions,
        "report": report,
        "comparisons": [c for c in report.comparisons if c.significant] if report else [],
        "events": service.events(project, name, limit=10),
        "models": sorted(service.catalog.models(project)),
    }


async def _body(request: Request, principal: Principal, name: str, message: str | None = None) -> Response:
    data = await run_in_threadpool(_detail_data, _service(request), principal, name)
    data["message"] = message
    data["money"] = money
    partial = is_htmx(request)
    return render(
        request, "console/endpoints/body.html" if partial else "console/endpoints/detail.html", data
    )


@router.get("/{name}")
async def endpoint_detail(request: Request, principal: WebPrincipal, name: str = Name) -> Response:
    return await _body(request, principal, name)


@router.post("/{name}/weights")
async def set_weights(request: Request, principal: WebPrincipal, name: str = Name) -> Response:
    form = await request.form()
    weights: dict[str, float] = {}
    for key, value in form.multi_items():
        if key.startswith("weight.") and isinstance(value, str):
            variant = key.removeprefix("weight.")
            try:
                weights[variant] = float(value)
            except ValueError:
                raise UserError(f"the weight of {variant!r} must be a number", param="weights") from None
    if not weights:
        raise UserError("no weights sent", param="weights")
    service = _service(request)
    await run_in_threadpool(
        lambda: service.set_weights(principal.project_id, name, weights, actor=principal.user_name)
    )
    return await _body(request, principal, name, "weights saved: a new experiment started")


@router.post("/{name}/variants")
async def add_variant(
    request: Request,
    principal: WebPrincipal,
    variant: Annotated[str, Form(max_length=40)],
    weight: Annotated[str, Form(max_length=20)] = "1",
    version: Annotated[str, Form(max_length=20)] = "",
    label: Annotated[str, Form(max_length=100)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    name: str = Name,
) -> Response:
    service = _service(request)
    current = (await run_in_threadpool(service.get, principal.project_id, name)).config
    added: dict[str, Any] = {"name": variant.strip(), "weight": _number(weight, "weight")}
    if version.strip():
        added["version"] = _whole(version, "version")
    for key, value in (("label", label), ("model", model)):
        if value.strip():
            added[key] = value.strip()
    variants = [v.model_dump(exclude_none=True) for v in current.variants] + [added]
    update = validated(EndpointUpdate, {"variants": variants})
    await run_in_threadpool(
        lambda: service.update(principal.project_id, name, update, actor=principal.user_name)
    )
    return await _body(request, principal, name, f"variant {variant.strip()} added: a new experiment started")


def _number(text: str, field: str) -> float:
    try:
        return float(text.strip() or "1")
    except ValueError:
        raise UserError(f"{field} must be a number, not {text.strip()[:40]!r}", param=field) from None


@router.post("/{name}/promote")
async def promote(
    request: Request,
    principal: WebPrincipal,
    variant: Annotated[str, Form(max_length=40)],
    note: Text = "",
    name: str = Name,
) -> Response:
    service = _service(request)
    await run_in_threadpool(
        lambda: experiments.promote(
            service, principal.project_id, name, variant, actor=principal.user_name, note=note.strip() or None
        )
    )
    return await _body(request, principal, name, f"variant {variant} promoted: it alone serves now")
