"""The calling user's tailoring: custom instructions and saved prompts, and the prompts shared with
the project. Every role has its own; another user's instructions and unshared prompts are 404s.
Promoting a shared prompt into the prompt registry needs an engineer.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.tailoring import (
    Filled,
    InstructionsPublic,
    InstructionsSet,
    PromotedPublic,
    PromptFill,
    SavedPromptPublic,
    SavedPromptSet,
    SharedPromote,
    ShareSet,
)
from fmops.tailoring import TailoringService
from fmops.tailoring.schemas import NAME_PATTERN

router = APIRouter(tags=["tailoring"], dependencies=gate(Role.consumer))
Name = Path(pattern=NAME_PATTERN, description="The saved prompt's name (what follows / in the chat)")
PromptId = Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="A shared prompt's id")


def _service(platform: PlatformDep) -> TailoringService:
    return TailoringService(platform.store)


@router.get("/api/me/instructions", response_model=InstructionsPublic, summary="Your custom instructions")
def get_instructions(platform: PlatformDep, principal: PrincipalDep) -> InstructionsPublic:
    return InstructionsPublic.model_validate(_service(platform).instructions(principal))


@router.put(
    "/api/me/instructions",
    response_model=InstructionsPublic,
    summary="Set your custom instructions (each part at most 1,500 characters; both empty: cleared)",
)
def set_instructions(
    body: InstructionsSet, platform: PlatformDep, principal: PrincipalDep
) -> InstructionsPublic:
    view = _service(platform).set_instructions(principal, body.about, body.style)
    return InstructionsPublic.model_validate(view)


@router.delete("/api/me/instructions", status_code=204, summary="Clear your custom instructions")
def clear_instructions(platform: PlatformDep, principal: PrincipalDep) -> Response:
    _service(platform).clear_instructions(principal)
    return Response(status_code=204)


@router.get(
    "/api/me/prompts",
    response_model=list[SavedPromptPublic],
    summary="Your saved prompts, then those others shared with the project",
)
def list_prompts(platform: PlatformDep, principal: PrincipalDep) -> list[SavedPromptPublic]:
    return [SavedPromptPublic.model_validate(p) for p in _service(platform).prompts(principal)]


@router.post(
    "/api/me/prompts",
    response_model=SavedPromptPublic,
    status_code=201,
    summary="Save a prompt (a template with {{ variables }}); saving under a name you use replaces it (200)",
    responses={200: {"model": SavedPromptPublic, "description": "Replaced your prompt of that name"}},
)
def save_prompt(
    body: SavedPromptSet, response: Response, platform: PlatformDep, principal: PrincipalDep
) -> SavedPromptPublic:
    view, created = _service(platform).save_prompt(
        principal, body.name, body.template, description=body.description, shared=body.shared
    )
    if not created:
        response.status_code = 200
    return SavedPromptPublic.model_validate(view)


@router.get("/api/me/prompts/{name}", response_model=SavedPromptPublic, summary="One of your saved prompts")
def get_prompt(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> SavedPromptPublic:
    return SavedPromptPublic.model_validate(_service(platform).prompt(principal, name))


@router.delete("/api/me/prompts/{name}", status_code=204, summary="Delete one of your saved prompts")
def delete_prompt(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> Response:
    _service(platform).delete_prompt(principal, name)
    return Response(status_code=204)


@router.put(
    "/api/me/prompts/{name}/shared",
    response_model=SavedPromptPublic,
    summary="Share one of your saved prompts with the project (read-only for others), or stop sharing it",
)
def share_prompt(
    body: ShareSet, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> SavedPromptPublic:
    return SavedPromptPublic.model_validate(_service(platform).share(principal, name, body.shared))


@router.post(
    "/api/me/prompts/{name}/fill",
    response_model=Filled,
    summary="What /name in the chat sends: your prompt (or one shared with the project) with its variables",
)
def fill_prompt(body: PromptFill, platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> Filled:
    return Filled(name=name, text=_service(platform).fill(principal, name, body.variables))


@router.get(
    "/api/shared-prompts",
    response_model=list[SavedPromptPublic],
    summary="The saved prompts shared with the project, yours included",
)
def list_shared(platform: PlatformDep, principal: PrincipalDep) -> list[SavedPromptPublic]:
    views = _service(platform).prompts(principal)
    return [SavedPromptPublic.model_validate(p) for p in views if p.shared]


@router.get(
    "/api/shared-prompts/{prompt_id}",
    response_model=SavedPromptPublic,
    summary="One prompt shared with the project",
)
def get_shared(
    platform: PlatformDep, principal: PrincipalDep, prompt_id: str = PromptId
) -> SavedPromptPublic:
    return SavedPromptPublic.model_validate(_service(platform).shared_prompt(principal, prompt_id))


@router.post(
    "/api/shared-prompts/{prompt_id}/promote",
    response_model=PromotedPublic,
    summary="Push a shared prompt into the prompt registry (a new prompt or version; its author is kept)",
    dependencies=gate(Role.engineer),
    responses=error_responses(409),
)
def promote_shared(
    body: SharedPromote, platform: PlatformDep, principal: PrincipalDep, prompt_id: str = PromptId
) -> PromotedPublic:
    promoted = _service(platform).promote(
        principal.project_id, prompt_id, platform.catalog, registry_name=body.name, actor=principal.user_name
    )
    return PromotedPublic.model_validate(promoted)
