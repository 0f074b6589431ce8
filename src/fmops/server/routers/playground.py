"""The playground: run inputs through prompt versions × models side by side, through the gateway."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.prompts.playground import Playground
from fmops.prompts.service import PromptService
from fmops.server.deps import PrincipalDep, gate
from fmops.server.schemas.playground import PlaygroundBody, PlaygroundPublic

router = APIRouter(tags=["prompts"], dependencies=gate(Role.engineer))


@router.post(
    "/api/playground",
    response_model=PlaygroundPublic,
    summary="Run each input through each target (prompt version × model); a failed cell says why",
)
async def playground(
    body: PlaygroundBody, platform: PlatformDep, principal: PrincipalDep
) -> PlaygroundPublic:
    prompts = PromptService(platform.store, platform.catalog)
    result = await Playground(prompts, platform.catalog, platform.gateway).run(principal, body)
    return PlaygroundPublic.model_validate(result)
