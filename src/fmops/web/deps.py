"""Who is signed in to the web UI, and what they may do: the cookie session, CSRF and role gates.

Web routes use these instead of `fmops.server.deps.authenticate`: a browser sends a cookie, not a
key. A state-changing request must also carry the session's CSRF token (the `X-CSRF-Token` header,
which HTMX sends from the page's `hx-headers`, or a `csrf_token` form field), so a cookie alone,
sent by another site's form, changes nothing.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request, params
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.auth.sessions import SignedIn
from fmops.errors import FmopsError, PermissionDenied
from fmops.platform import PlatformDep

COOKIE = "fmops_session"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SignInRequired(FmopsError):
    """No valid session: pages redirect to the sign-in form, HTMX and fetch calls get a 401."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "sign_in_required"


class CsrfFailed(FmopsError):
    status_code = 403
    error_type = "permission_error"
    code = "csrf_failed"


async def signed_in(request: Request, platform: PlatformDep) -> SignedIn:
    request.state.web = True
    token = request.cookies.get(COOKIE, "")
    found = await run_in_threadpool(platform.web_sessions.resolve, token) if token else None
    if found is None:
        raise SignInRequired("sign in to continue")
    request.state.signed_in = found
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        if not sent or not hmac.compare_digest(sent.encode(), found.csrf_token.encode()):
            raise CsrfFailed("the form is stale or came from another site: reload the page and try again")
    return found


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


async def web_principal(found: SignedInDep) -> Principal:
    return found.principal


WebPrincipal = Annotated[Principal, Depends(web_principal)]


class WebRoleGate:
    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, principal: WebPrincipal) -> Principal:
        if not principal.role.covers(self.role):
            what = "the console" if self.role in (Role.annotator, Role.engineer) else "this page"
            raise PermissionDenied(f"your role ({principal.role}) cannot open {what}; it needs {self.role}")
        return principal


def web_gate(role: Role) -> list[params.Depends]:
    """Router dependencies: a session whose role covers `role` (consumers never reach the console)."""
    return [Depends(WebRoleGate(role))]


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"
