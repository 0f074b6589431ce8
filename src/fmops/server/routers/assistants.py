"""Assistants of the caller's project: endpoints published to the chat.

Everyone lists and reads the assistants they may use (another is a 404, as if it did not exist);
engineers publish, unpublish and read each one's usage, and see every assistant with its audience.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query

from fmops.assistants import AssistantService, AssistantView
from fmops.assistants.schemas import NAME_PATTERN
from fmops.assistants.usage import DEFAULT_WINDOW, WINDOWS, usage, window
from fmops.auth import Principal, Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.schemas.assistants import (
    AssistantPublic,
    AssistantPublish,
    AssistantPublished,
    AssistantUsagePublic,
)

router = APIRouter(prefix="/api/assistants", tags=["assistants"], dependencies=gate(Role.consumer))
ENGINEER = gate(Role.engineer)
Name = Path(pattern=NAME_PATTERN, description="The assistant's name")


def _public(view: AssistantView, principal: Principal) -> AssistantPublic:
    return AssistantPublic.model_validate(view.public(audience=principal.role.covers(Role.engineer)))


@router.get("", response_model=list[AssistantPublic], summary="The assistants you may use")
def list_assistants(
    platform: PlatformDep,
    principal: PrincipalDep,
    endpoint: str | None = Query(None, max_length=200, description="Only those calling this endpoint"),
) -> list[AssistantPublic]:
    views = AssistantService(platform.store).usable(principal)
    return [_public(v, principal) for v in views if endpoint is None or v.endpoint == endpoint]


@router.get("/{name}", response_model=AssistantPublic, summary="One assistant you may use")
def get_assistant(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> AssistantPublic:
    return _public(AssistantService(platform.store).get_usable(principal, name), principal)


@router.put(
    "/{name}",
    response_model=AssistantPublished,
    dependencies=ENGINEER,
    summary="Publish an endpoint as an assistant, or replace the one of that name (refused when "
    "someone named cannot call the endpoint)",
)
def publish_assistant(
    body: AssistantPublish, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> AssistantPublished:
    change, view = AssistantService(platform.store).publish(
        principal.project_id, body.named(name), actor=principal.user_name
    )
    return AssistantPublished(change=change, assistant=_public(view, principal))


@router.delete(
    "/{name}",
    response_model=AssistantPublic,
    dependencies=ENGINEER,
    summary="Take an assistant out of the chat",
)
def unpublish_assistant(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> AssistantPublic:
    return _public(AssistantService(platform.store).unpublish(principal.project_id, name), principal)


@router.get(
    "/{name}/usage",
    response_model=AssistantUsagePublic,
    dependencies=ENGINEER,
    summary="Conversations, answers, users, thumbs and evaluator scores of an assistant over a window",
)
def assistant_usage(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    window_name: str = Query(
        DEFAULT_WINDOW,
        alias="window",
        pattern=f"^({'|'.join(WINDOWS)})$",  # in the schema too; window() words the 400
        description=f"One of {', '.join(WINDOWS)}",
    ),
) -> AssistantUsagePublic:
    span = window(window_name)
    view = AssistantService(platform.store).get(principal.project_id, name)
    found = usage(platform.store, principal.project_id, view.name, view.endpoint, span=span)
    return AssistantUsagePublic.model_validate(found.public())
