"""`/console/admin/users`: the project's members, their roles, status and passwords (admins only).

Every rule (the last admin stays, disabling is account-wide, who may set a password) lives in
AuthService and SessionService; this page only shows their answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.auth.passwords import check_password
from fmops.errors import UserError
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import console_page
from fmops.web.routers.console_admin_forms import answer, email_of, role_of
from fmops.web.templating import render

PAGE = console_page("/console/admin/users", "Users", "Admin", role=Role.admin, order=10)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.admin))

_PAGE, _PANEL = "console/admin/users.html", "console/admin/users_panel.html"
Text = Annotated[str, Form(max_length=400)]
Password = Annotated[str, Form(max_length=1024)]


async def _context(platform: Platform, principal: Principal) -> dict[str, Any]:
    members = await run_in_threadpool(platform.auth.list_members, principal)
    return {"members": members, "roles": list(Role)}


async def _answer(request: Request, platform: Platform, principal: Principal, message: str) -> Response:
    return answer(request, _PAGE, _PANEL, await _context(platform, principal), message)


@router.get("")
async def users_page(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    return render(request, _PAGE, {**await _context(platform, principal), "message": None})


@router.post("")
async def create_user(
    request: Request,
    platform: PlatformDep,
    principal: WebPrincipal,
    name: Text = "",
    email: Text = "",
    role: Text = "consumer",
    password: Password = "",
) -> Response:
    name, chosen = name.strip(), role_of(role)
    assert chosen is not None
    address = email_of(email)
    if password:
        check_password(password)  # before the user exists: no half-made account
    member = await run_in_threadpool(
        lambda: platform.auth.create_user(
            name, role=chosen, project_id=principal.project_id, email=address, creator=principal
        )
    )
    if password:
        await run_in_threadpool(
            platform.web_sessions.set_member_password, principal, member.user.id, password
        )
    with_password = " with a password" if password else "; set a password or create a key to let them in"
    return await _answer(request, platform, principal, f"added {name} as {chosen}{with_password}")


@router.post("/{user_id}/role")
async def change_role(
    request: Request, user_id: str, platform: PlatformDep, principal: WebPrincipal, role: Text = ""
) -> Response:
    chosen = role_of(role)
    member = await run_in_threadpool(lambda: platform.auth.update_member(principal, user_id, role=chosen))
    return await _answer(request, platform, principal, f"{member.user.name} is now {member.role}")


@router.post("/{user_id}/disabled")
async def set_disabled(
    request: Request, user_id: str, platform: PlatformDep, principal: WebPrincipal, disabled: Text = ""
) -> Response:
    if disabled not in ("true", "false"):
        raise UserError("disabled must be true or false", param="disabled")
    off = disabled == "true"
    member = await run_in_threadpool(lambda: platform.auth.update_member(principal, user_id, disabled=off))
    if off:  # their browser sessions end now, not at their next request's check
        await run_in_threadpool(platform.web_sessions.sign_out_user, member.user.id)
    state = "disabled: their keys and sessions no longer work" if off else "enabled"
    return await _answer(request, platform, principal, f"{member.user.name} is {state}")


@router.post("/{user_id}/password")
async def set_password(
    request: Request, user_id: str, platform: PlatformDep, principal: WebPrincipal, password: Password = ""
) -> Response:
    await run_in_threadpool(platform.web_sessions.set_member_password, principal, user_id, password)
    if user_id == principal.user_id:
        # Setting one's own password ends one's own session too: sign in again with it.
        return answer_sign_in_again(request)
    return await _answer(request, platform, principal, "password set; their web sessions have ended")


def answer_sign_in_again(request: Request) -> Response:
    response = Response(status_code=204 if is_htmx(request) else 303)
    response.headers["hx-redirect" if response.status_code == 204 else "location"] = "/login"
    return response


@router.post("/{user_id}/remove")
async def remove_user(
    request: Request, user_id: str, platform: PlatformDep, principal: WebPrincipal
) -> Response:
    members = await run_in_threadpool(platform.auth.list_members, principal)
    name = next((m.user.name for m in members if m.user.id == user_id), user_id)
    await run_in_threadpool(platform.auth.remove_member, principal, user_id)
    return await _answer(
        request, platform, principal, f"removed {name} from the project; their keys here are revoked"
    )
