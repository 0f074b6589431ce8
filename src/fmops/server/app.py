"""The FastAPI application factory: one router per resource, assembled here with auth and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from fmops import __version__
from fmops.auth import Role
from fmops.platform import Platform
from fmops.server.deps import RoleGate, authenticate
from fmops.server.errors import ERROR_DESCRIPTIONS, ErrorBody, install_error_handlers
from fmops.server.middleware import BodyLimitMiddleware
from fmops.server.routers import (
    alerts,
    annotation,
    assistants,
    conversations,
    curation,
    dataset_traces,
    datasets,
    endpoints,
    evals,
    evaluators,
    experiments,
    feedback,
    finetunes,
    guardrails,
    health,
    inference,
    jobs,
    keys,
    me,
    metrics,
    models,
    optimizations,
    playground,
    projects,
    prompts,
    stats,
    tailoring,
    traces,
    users,
    v1_chat,
    v1_embeddings,
    v1_models,
    v1_traces,
)
from fmops.settings import Settings
from fmops.web.app import install_web

ROUTERS = [
    health.router,
    me.router,
    tailoring.router,  # /api/me/instructions, /api/me/prompts, /api/shared-prompts
    projects.router,
    users.router,
    keys.router,
    jobs.router,
    traces.router,
    models.router,
    v1_chat.router,
    v1_embeddings.router,
    v1_models.router,
    v1_traces.router,
    feedback.router,
    conversations.router,  # the caller's own chat conversations: search, read, export
    metrics.router,
    stats.router,
    alerts.router,
    evaluators.router,
    prompts.router,
    endpoints.router,
    assistants.router,
    guardrails.router,
    experiments.router,
    playground.router,
    dataset_traces.router,  # before any /api/datasets/{name} route: from-traces is not a dataset's name
    annotation.router,
    datasets.router,
    curation.router,
    inference.router,  # POST /api/datasets/{name}/infer: batch inference
    finetunes.router,
    evals.router,
    optimizations.router,
]


def _min_role(dependant: Dependant) -> str | None:
    """The strictest RoleGate on a route (router- and route-level dependencies alike).

    A route that needs a key but has no gate accepts every role: its minimum is the lowest one.
    """
    gates: list[RoleGate] = []
    needs_key = False
    pending = list(dependant.dependencies)
    while pending:
        dep = pending.pop()
        if isinstance(dep.call, RoleGate):
            gates.append(dep.call)
        needs_key = needs_key or dep.call is authenticate
        pending.extend(dep.dependencies)
    if gates:
        return max((g.role for g in gates), key=lambda r: r.rank).value
    return Role.consumer.value if needs_key else None


def _document_errors(operation: dict[str, Any], path: str, role: str | None) -> None:
    """Declare the error responses every route shares, in the shape they really have.

    FastAPI documents a 422 for routes with parameters; fmops answers invalid input with 400.
    """
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = set()
    # FastAPI's own 422 (its validation body) is a 400 here; a 422 a route declares is its own.
    if "HTTPValidationError" in str(responses.get("422", "")):
        responses.pop("422")
        statuses.add(400)
    if "requestBody" in operation:
        statuses.add(400)
    if "requestBody" in operation:
        statuses.add(413)
    if role is not None:
        statuses.add(401)
    if role is not None and role != Role.consumer:
        statuses.add(403)
    if "{" in path:
        statuses.add(404)
    for status in sorted(statuses):
        responses.setdefault(
            str(status),
            {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            },
        )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # the 422 bodies fmops never sends
        components.pop(unused, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    # Included routers' routes are only reachable (with the router's dependencies) through route contexts.
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        role = _min_role(context.dependant)
        for method in context.methods or ():
            operation = schema["paths"].get(context.path_format, {}).get(method.lower())
            if operation is not None:
                operation["x-fmops-min-role"] = role
                _document_errors(operation, context.path_format or "", role)
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    platform = platform or Platform.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        yield
        await platform.shutdown()

    app = FastAPI(
        title="fmops",
        version=__version__,
        description="Serve, trace, curate, fine-tune, evaluate and promote foundation models.",
        lifespan=lifespan,
    )
    app.state.platform = platform
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    install_web(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
