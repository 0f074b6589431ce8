"""API keys: every role manages its own; admins manage everyone's in their project."""

from __future__ import annotations

from fastapi import APIRouter, Query

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.auth import KeyCreate, KeyCreated, KeyPublic, LimitsUpdate
from fmops.store.models import ApiKey

router = APIRouter(prefix="/api/keys", tags=["keys"], dependencies=gate(Role.consumer))


def _public(key: ApiKey, user: str, project: str) -> KeyPublic:
    return KeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=Role(key.role),
        user=user,
        project=project,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        budget=key.budget,
        budget_period=key.budget_period,
    )


@router.get(
    "",
    response_model=list[KeyPublic],
    summary="The caller's keys (admins: all=true for everyone's)",
    responses=error_responses(403),
)
def list_keys(
    platform: PlatformDep, principal: PrincipalDep, all: bool = Query(False, description="Every user's keys")
) -> list[KeyPublic]:
    return [_public(k, u, p) for k, u, p in platform.auth.list_keys(principal, all_users=all)]


@router.post(
    "",
    response_model=KeyCreated,
    status_code=201,
    summary="Create a key; its value is shown once",
    responses=error_responses(403, 404),
)
def create_key(body: KeyCreate, platform: PlatformDep, principal: PrincipalDep) -> KeyCreated:
    key, plaintext = platform.auth.create_key(
        name=body.name,
        role=body.role,
        creator=principal,
        project=body.project,
        user=body.user,
        expires_at=body.expires_at,
    )
    user = body.user or principal.user_name
    project = body.project or principal.project_name
    return KeyCreated(**_public(key, user, project).model_dump(), key=plaintext)


@router.delete(
    "/{key_id}",
    response_model=KeyPublic,
    summary="Revoke a key; every server process refuses it within FMOPS_KEY_CACHE_SECONDS (2 s by default)",
)
def revoke_key(key_id: str, platform: PlatformDep, principal: PrincipalDep) -> KeyPublic:
    key = platform.auth.revoke_key(principal, key_id)
    names = {
        k.id: (u, p) for k, u, p in platform.auth.list_keys(principal, all_users=principal.role == Role.admin)
    }
    user, project = names.get(key.id, (principal.user_name, principal.project_name))
    return _public(key, user, project)


@router.patch(
    "/{key_id}/limits",
    response_model=KeyPublic,
    summary="Change a key's rate limits and budget (admin); fields left out keep their value",
    responses=error_responses(404),
    dependencies=gate(Role.admin),
)
def set_key_limits(
    key_id: str, body: LimitsUpdate, platform: PlatformDep, principal: PrincipalDep
) -> KeyPublic:
    key = platform.auth.set_key_limits(principal, key_id, body.changes())
    names = {k.id: u for k, u, _ in platform.auth.list_keys(principal, all_users=True)}
    return _public(key, names.get(key.id, principal.user_name), principal.project_name)
