"""Users of the caller's project and their roles (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from fmops.auth import Member, Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.auth import PasswordSet, UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"], dependencies=gate(Role.admin))


def _public(member: Member) -> UserPublic:
    u = member.user
    return UserPublic(
        id=u.id, name=u.name, email=u.email, disabled=u.disabled, role=member.role, created_at=u.created_at
    )


@router.get("", response_model=list[UserPublic], summary="Members of the caller's project")
def list_users(platform: PlatformDep, principal: PrincipalDep) -> list[UserPublic]:
    return [_public(m) for m in platform.auth.list_members(principal)]


@router.post(
    "",
    response_model=UserPublic,
    status_code=201,
    summary="Add a user to the caller's project",
    responses=error_responses(409),
)
def create_user(body: UserCreate, platform: PlatformDep, principal: PrincipalDep) -> UserPublic:
    member = platform.auth.create_user(
        body.name, role=body.role, project_id=principal.project_id, email=body.email, creator=principal
    )
    return _public(member)


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    summary="Change a member's role or disable them",
    responses=error_responses(409),
)
def update_user(user_id: str, body: UserUpdate, platform: PlatformDep, principal: PrincipalDep) -> UserPublic:
    return _public(platform.auth.update_member(principal, user_id, role=body.role, disabled=body.disabled))


@router.delete(
    "/{user_id}",
    status_code=204,
    summary="Remove a member (their keys here are revoked)",
    responses=error_responses(409),
)
def remove_user(user_id: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    platform.auth.remove_member(principal, user_id)
    return Response(status_code=204)


@router.put(
    "/{user_id}/password",
    status_code=204,
    summary="Set a member's web sign-in password (their browser sessions end)",
    responses=error_responses(404, 409),
)
def set_password(user_id: str, body: PasswordSet, platform: PlatformDep, principal: PrincipalDep) -> Response:
    platform.web_sessions.set_member_password(principal, user_id, body.password)
    return Response(status_code=204)
