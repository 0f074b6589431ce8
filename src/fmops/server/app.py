"""The FastAPI application factory: one router per resource, assembled here with auth and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from fmops import __version__
from fmops.server.deps import RoleGate
from fmops.server.errors import install_error_handlers
from fmops.server.middleware import BodyLimitMiddleware
from fmops.server.platform import Platform
from fmops.server.routers import health, jobs, keys, me, projects, users
from fmops.settings import Settings

ROUTERS = [health.router, me.router, projects.router, users.router, keys.router, jobs.router]


def _min_role(route: APIRoute) -> str | None:
    """The strictest RoleGate on a route (router- and route-level dependencies alike)."""
    roles = [d.call.role for d in route.dependant.dependencies if isinstance(d.call, RoleGate)]
    return max(roles, key=lambda r: r.rank).value if roles else None


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        role = _min_role(route)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation["x-fmops-min-role"] = role
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    platform = platform or Platform.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
