"""Who the calling key belongs to."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.server.deps import PrincipalDep
from fmops.server.schemas.auth import Me

router = APIRouter(prefix="/api", tags=["auth"])


@router.get("/me", response_model=Me, summary="The calling key's user, project and role")
async def me(principal: PrincipalDep) -> Me:
    return Me(
        key_id=principal.key_id,
        user_id=principal.user_id,
        user_name=principal.user_name,
        project_id=principal.project_id,
        project_name=principal.project_name,
        role=principal.role,
    )
