"""Projects: the tenancy boundary. Listing shows only the caller's projects."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.auth import LimitsUpdate, ProjectCreate, ProjectPublic, ProjectUpdate

router = APIRouter(prefix="/api/projects", tags=["projects"], dependencies=gate(Role.consumer))


@router.get("", response_model=list[ProjectPublic], summary="Projects the caller's user belongs to")
def list_projects(platform: PlatformDep, principal: PrincipalDep) -> list[ProjectPublic]:
    rows = platform.auth.list_projects(principal)
    return [ProjectPublic.model_validate(p).model_copy(update={"role": r}) for p, r in rows]


@router.post(
    "",
    response_model=ProjectPublic,
    status_code=201,
    summary="Create a project (admin); the caller's user becomes its admin",
    responses=error_responses(409),
    dependencies=gate(Role.admin),
)
def create_project(body: ProjectCreate, platform: PlatformDep, principal: PrincipalDep) -> ProjectPublic:
    project = platform.auth.create_project(body.name, owner=principal)
    return ProjectPublic.model_validate(project).model_copy(update={"role": Role.admin})


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project_id: str, platform: PlatformDep, principal: PrincipalDep) -> ProjectPublic:
    project, role = platform.auth.get_project(principal, project_id)
    return ProjectPublic.model_validate(project).model_copy(update={"role": role})


@router.patch(
    "/current",
    response_model=ProjectPublic,
    summary="Change the calling key's project (admin): retention",
    dependencies=gate(Role.admin),
)
def update_project(body: ProjectUpdate, platform: PlatformDep, principal: PrincipalDep) -> ProjectPublic:
    project = platform.auth.set_retention(principal, body.retention_days)
    return ProjectPublic.model_validate(project).model_copy(update={"role": principal.role})


@router.patch(
    "/current/limits",
    response_model=ProjectPublic,
    summary="Change the calling key's project's rate limits and budget (admin); omitted fields stay",
    dependencies=gate(Role.admin),
)
def set_project_limits(body: LimitsUpdate, platform: PlatformDep, principal: PrincipalDep) -> ProjectPublic:
    project = platform.auth.set_project_limits(principal, body.changes())
    return ProjectPublic.model_validate(project).model_copy(update={"role": principal.role})
