"""Join the web UI to the API's FastAPI application: static files, routers, HTML error pages."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from fmops.web.errors import error_page
from fmops.web.routers import WEB_ROUTERS
from fmops.web.templating import STATIC


class _CachedStatic(StaticFiles):
    """Assets are addressed by a content hash (`?v=`), so a browser may keep them a year."""

    async def get_response(self, path: str, scope: Scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
            response.headers["x-content-type-options"] = "nosniff"
        return response


def install_web(app: FastAPI) -> None:
    app.state.error_page = error_page
    app.mount("/static", _CachedStatic(directory=STATIC), name="static")
    for router in WEB_ROUTERS:
        app.include_router(router)
