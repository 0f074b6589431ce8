"""Sign in (with an API key, or a user name and password) and sign out."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.errors import AuthenticationError, FmopsError, UserError
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import COOKIE, CsrfFailed, SignedInDep
from fmops.web.htmx import is_htmx
from fmops.web.templating import render

router = APIRouter(include_in_schema=False)
_THROTTLE_FAILURES = 10  # failed password sign-ins per user name ...
_THROTTLE_SECONDS = 15 * 60  # ... in this sliding window


class TooManyAttempts(FmopsError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "sign_in_throttled"


def safe_next(target: str | None) -> str:
    """Only a path on this server: `next=https://evil.example` or `//evil.example` is an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/"
    return target


async def _check_throttle(platform: Platform, key: str) -> None:
    """Online password guessing: after a few failures for one user name, wait before the next try.

    Keys need no such limit (40 random characters); this also bounds the scrypt work one name costs.
    """
    result = await platform.counters.hit_one(key, 0, seconds=_THROTTLE_SECONDS, limit=_THROTTLE_FAILURES - 1)
    if not result.allowed:
        minutes = max(1, math.ceil(min(result.retry_after, _THROTTLE_SECONDS) / 60))
        raise TooManyAttempts(
            f"too many failed sign-ins for this user name; try again in {minutes} minute(s), "
            "or sign in with an API key"
        )


def _home_for(role: Role) -> str:
    if role == Role.annotator:
        return "/console/annotate"  # the queues are all of the console an annotator sees
    return "/" if role == Role.consumer else "/console"


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    request.state.web = True
    return render(request, "login.html", {"next": safe_next(next), "error": None, "mode": "key"})


@router.post("/login")
async def login(
    request: Request,
    platform: PlatformDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    project: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    request.state.web = True
    if request.headers.get("sec-fetch-site") == "cross-site":
        # Login CSRF: another site's form must not sign this browser in as someone of its choosing.
        raise CsrfFailed("sign in from this server's own page")
    sessions = platform.web_sessions
    mode = "password" if username else "key"
    try:
        if username:
            throttle = f"web:login-failures:{username.strip().lower()}"
            await _check_throttle(platform, throttle)
            try:
                token = await run_in_threadpool(
                    sessions.sign_in_with_password, username.strip(), password, project.strip() or None
                )
            except AuthenticationError:
                await platform.counters.hit_one(throttle, 1, seconds=_THROTTLE_SECONDS, limit=math.inf)
                raise
        elif api_key.strip():
            token = await run_in_threadpool(sessions.sign_in_with_key, api_key)
        else:
            raise UserError("enter an API key, or a user name and password")
    except (AuthenticationError, UserError, TooManyAttempts) as exc:
        context = {"next": safe_next(next), "error": exc.message, "mode": mode, "username": username}
        return render(request, "login.html", context, status=exc.status_code)
    found = await run_in_threadpool(sessions.resolve, token)
    target = safe_next(next)
    if found is not None and target == "/":
        target = _home_for(found.principal.role)
    response = RedirectResponse(target, status_code=303)
    # No max_age: the browser keeps the cookie while the server-side expiry keeps sliding with use.
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,  # no script reads it, so an injected one could not steal it
        samesite="lax",
        secure=platform.settings.web_cookie_secure,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, platform: PlatformDep, _: SignedInDep) -> Response:
    await run_in_threadpool(platform.web_sessions.sign_out, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    if is_htmx(request):
        response.headers["hx-redirect"] = "/login"
    return response
