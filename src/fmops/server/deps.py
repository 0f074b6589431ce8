"""Dependencies shared by the API's routers: the caller's identity and role gates.

The platform itself is `fmops.platform.PlatformDep`, shared with the web UI.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request, params
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import AuthenticationError
from fmops.platform import Platform, PlatformDep

MALFORMED = "malformed Authorization header: use `Authorization: Bearer <key>`"


def bearer_key(header: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, None when there is none: the one place
    that reads the header (the API's dependency below and the gateway's fast path)."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    key = credentials.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationError(MALFORMED)
    return key


async def principal_for(platform: Platform, header: str | None) -> Principal:
    """The caller behind an Authorization header (401 when there is none, or it is not a live key)."""
    raw = bearer_key(header)
    # A recently verified key is answered in the event loop; only a miss pays the thread hop.
    principal = platform.auth.cached(raw) if raw else None
    if principal is None:
        principal = await run_in_threadpool(platform.auth.authenticate, raw)
    return principal


class _Bearer(HTTPBearer):
    """HTTPBearer for the OpenAPI document's security scheme; the header is read by `bearer_key`."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("authorization")


_bearer = _Bearer(auto_error=False, description="An fmops API key: `Authorization: Bearer fmk-...`")


async def authenticate(
    request: Request, platform: PlatformDep, header: Annotated[str | None, Depends(_bearer)]
) -> Principal:
    principal = await principal_for(platform, header)
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

_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")


def _not_a_number(value: Any) -> Any:
    # pydantic reads "-4126" as a Unix time; a query string's time is ISO 8601, as the schema says.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("a time is an ISO 8601 date-time such as 2026-12-06T12:00:00Z, not a number")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_not_a_number)]


def text_query(max_length: int = 200, description: str | None = None) -> Any:
    """An optional text filter in a query string; a fresh Query per parameter, as FastAPI binds each."""
    return Query(None, min_length=1, max_length=max_length, pattern=NO_NUL, description=description)
