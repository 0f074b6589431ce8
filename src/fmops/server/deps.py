"""Dependencies shared by the API's routers: the caller's identity and role gates.

The platform itself is `fmops.platform.PlatformDep`, shared with the web UI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import AuthenticationError
from fmops.platform import PlatformDep

_bearer = HTTPBearer(auto_error=False, description="An fmops API key: `Authorization: Bearer fmk-...`")


async def authenticate(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        header = request.headers.get("authorization")
        if header:
            raise AuthenticationError("malformed Authorization header: use `Authorization: Bearer <key>`")
        raw = None
    else:
        raw = credentials.credentials
    # A recently verified key is answered in the event loop; only a miss pays the thread hop.
    principal = platform.auth.cached(raw) if raw else None
    if principal is None:
        principal = await run_in_threadpool(platform.auth.authenticate, raw)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


class RoleGate:
    """`Depends(RoleGate(Role.engineer))` on a router: the least role its routes accept.

    The role is also published in the OpenAPI document as `x-fmops-min-role`, so the policy can be
    read (and tested) from the schema.
    """

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, principal: PrincipalDep) -> Principal:
        principal.require(self.role)
        return principal


def gate(role: Role) -> list[params.Depends]:
    """Router-level dependencies for `role`."""
    return [Depends(RoleGate(role))]


# No NUL characters: PostgreSQL cannot hold them, so a filter carrying one could never match.
NO_NUL = r"^[^\x00]*$"


def text_query(max_length: int = 200, description: str | None = None) -> Any:
    """An optional text filter in a query string; a fresh Query per parameter, as FastAPI binds each."""
    return Query(None, min_length=1, max_length=max_length, pattern=NO_NUL, description=description)
