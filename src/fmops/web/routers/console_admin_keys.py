"""`/console/admin/keys`: every key of the project; create one for a member, revoke, set limits (admins).

A new key's value is in the one response that creates it and nowhere else: the store keeps its
hash, and pages are sent `no-store`, so the back button cannot bring it back either.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.platform import Platform, PlatformDep
from fmops.store import utcnow
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.pages import console_page
from fmops.web.routers.console_admin_forms import answer, expiry_of, limit_changes, role_of
from fmops.web.templating import render

PAGE = console_page("/console/admin/keys", "Keys", "Admin", role=Role.admin, order=20)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.admin))

_PAGE, _PANEL = "console/admin/keys.html", "console/admin/keys_panel.html"
Text = Annotated[str, Form(max_length=400)]


async def _context(platform: Platform, principal: Principal) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        keys = platform.auth.list_keys(principal, all_users=True)
        members = platform.auth.list_members(principal)
        return {
            "keys": sorted(keys, key=lambda row: row[0].created_at, reverse=True),  # newest first
            "members": members,
            "roles": list(Role),
            "now": utcnow(),
            "created": None,
        }

    return await run_in_threadpool(load)


@router.get("")
async def keys_page(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    return render(request, _PAGE, {**await _context(platform, principal), "message": None})


@router.post("")
async def create_key(
    request: Request,
    platform: PlatformDep,
    principal: WebPrincipal,
    user: Text = "",
    name: Text = "",
    role: Text = "",
    expires: Text = "",
) -> Response:
    chosen, ends = role_of(role, optional=True), expiry_of(expires)
    key, plaintext = await run_in_threadpool(
        lambda: platform.auth.create_key(
            name=name, role=chosen, creator=principal, user=user.strip() or None, expires_at=ends
        )
    )
    context = await _context(platform, principal)
    context["created"] = {"name": key.name, "user": user.strip() or principal.user_name, "key": plaintext}
    return answer(request, _PAGE, _PANEL, context, f"created key {key.name}: copy it now, it is shown once")


@router.post("/{key_id}/revoke")
async def revoke_key(
    request: Request, key_id: str, platform: PlatformDep, principal: WebPrincipal
) -> Response:
    key = await run_in_threadpool(platform.auth.revoke_key, principal, key_id)
    message = f"revoked key {key.name}: it and the sessions signed in with it stop working now"
    return answer(request, _PAGE, _PANEL, await _context(platform, principal), message)


@router.post("/{key_id}/limits")
async def set_limits(
    request: Request,
    key_id: str,
    platform: PlatformDep,
    principal: WebPrincipal,
    rpm: Text = "",
    tpm: Text = "",
    budget: Text = "",
    budget_period: Text = "month",
) -> Response:
    changes = limit_changes(rpm, tpm, budget, budget_period)
    key = await run_in_threadpool(platform.auth.set_key_limits, principal, key_id, changes)
    message = f"limits of key {key.name} saved"
    return answer(request, _PAGE, _PANEL, await _context(platform, principal), message)
