"""Liveness and readiness: the only routes that need no key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from fmops import __version__
from fmops.platform import PlatformDep
from fmops.store import is_current

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: str
    detail: str


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="The process can serve: database reachable and migrated",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; `detail` says why"}},
)
async def readyz(platform: PlatformDep) -> Any:
    def check() -> tuple[bool, str]:
        try:
            platform.store.ping()
        except Exception:
            return False, "database unreachable"
        if not is_current(platform.store):
            return False, "database schema is behind; run `fmops db upgrade`"
        return True, "ok"

    ready, detail = await run_in_threadpool(check)
    return JSONResponse({"status": "ok" if ready else "unavailable", "detail": detail}, 200 if ready else 503)
