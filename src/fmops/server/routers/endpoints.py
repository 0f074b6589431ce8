"""Endpoints of the caller's project: what consumers call as `model="<name>"`.

Consumers may list and read the enabled ones (to know what they can call); engineers create,
change and delete them, and see disabled ones and the history of changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from fmops.auth import Principal, Role
from fmops.endpoints.schemas import NAME_PATTERN
from fmops.endpoints.service import EndpointService, EndpointView
from fmops.platform import Platform, PlatformDep
from fmops.prompts.service import PromptService
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.endpoints import (
    EndpointCreate,
    EndpointEventPublic,
    EndpointPatch,
    EndpointPublic,
    WeightsUpdate,
)

router = APIRouter(prefix="/api/endpoints", tags=["endpoints"], dependencies=gate(Role.consumer))
ENGINEER = gate(Role.engineer)
Name = Path(pattern=NAME_PATTERN, description="The endpoint's name (what callers send as `model`)")


def _service(platform: Platform) -> EndpointService:
    return EndpointService(platform.store, platform.catalog, PromptService(platform.store, platform.catalog))


def _public(view: EndpointView) -> EndpointPublic:
    return EndpointPublic.model_validate(view.public())


def _sees_disabled(principal: Principal) -> bool:
    return principal.role.covers(Role.engineer)


@router.get("", response_model=list[EndpointPublic], summary="Endpoints (consumers see the enabled ones)")
def list_endpoints(platform: PlatformDep, principal: PrincipalDep) -> list[EndpointPublic]:
    views = _service(platform).list(principal.project_id, enabled_only=not _sees_disabled(principal))
    return [_public(v) for v in views]


@router.post(
    "",
    response_model=EndpointPublic,
    status_code=201,
    dependencies=ENGINEER,
    summary="Create an endpoint; it serves at once on every replica",
    responses=error_responses(409),
)
def create_endpoint(body: EndpointCreate, platform: PlatformDep, principal: PrincipalDep) -> EndpointPublic:
    view = _service(platform).create(
        principal.project_id, body, actor=principal.user_name, key_id=principal.key_id
    )
    return _public(view)


@router.get("/{name}", response_model=EndpointPublic, summary="One endpoint")
def get_endpoint(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> EndpointPublic:
    view = _service(platform).get(principal.project_id, name, enabled_only=not _sees_disabled(principal))
    return _public(view)


@router.patch(
    "/{name}",
    response_model=EndpointPublic,
    dependencies=ENGINEER,
    summary="Change an endpoint; fields left out keep their value (new variants start a new experiment)",
    responses=error_responses(409),  # a guardrails: entry named as a stored policy of the endpoint
)
def update_endpoint(
    body: EndpointPatch, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> EndpointPublic:
    return _public(_service(platform).update(principal.project_id, name, body, actor=principal.user_name))


@router.put(
    "/{name}/weights",
    response_model=EndpointPublic,
    dependencies=ENGINEER,
    summary="Set variant weights by name (a new experiment starts)",
)
def set_weights(
    body: WeightsUpdate, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> EndpointPublic:
    view = _service(platform).set_weights(principal.project_id, name, body.weights, actor=principal.user_name)
    return _public(view)


@router.get(
    "/{name}/events",
    response_model=list[EndpointEventPublic],
    dependencies=ENGINEER,
    summary="What happened to an endpoint, newest first",
)
def endpoint_events(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EndpointEventPublic]:
    events = _service(platform).events(principal.project_id, name, limit=limit)
    return [EndpointEventPublic.model_validate(e) for e in events]


@router.delete("/{name}", response_model=EndpointPublic, dependencies=ENGINEER, summary="Delete an endpoint")
def delete_endpoint(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> EndpointPublic:
    return _public(_service(platform).delete(principal.project_id, name, actor=principal.user_name))
