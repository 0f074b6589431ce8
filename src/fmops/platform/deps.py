"""The platform as a FastAPI dependency, for the API's routers and the web UI's alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fmops.platform.core import Platform


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]
