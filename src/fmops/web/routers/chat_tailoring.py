"""The chat page's tailoring (static/chat_tailoring.js): custom instructions, the prompt library and
`/name`, and each conversation's switch for the instructions. JSON in and out, for the signed-in
person only (another's prompt, instructions or conversation is a 404), the same service as the API's
`/api/me/...` routes (fmops.tailoring)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.tailoring import TailoringService
from fmops.tailoring.schemas import (
    DESCRIPTION_MAX,
    INSTRUCTIONS_MAX,
    NAME_PATTERN,
    PROMPT_MAX,
    ConversationSwitch,
    InstructionsSet,
    PromptFill,
    SavedPromptSet,
)
from fmops.web.deps import SignedInDep

router = APIRouter(include_in_schema=False)
Name = Annotated[str, Path(pattern=NAME_PATTERN)]


def _json(value: Any, status: int = 200) -> JSONResponse:
    data = (
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
    )
    return JSONResponse(_plain(data), status_code=status)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@router.get("/chat/tailoring")
async def tailoring(platform: PlatformDep, found: SignedInDep) -> Response:
    """Everything the page needs at once: the instructions, the prompts, the limits."""
    service = TailoringService(platform.store)

    def load() -> dict[str, Any]:
        return {
            "instructions": dataclasses.asdict(service.instructions(found.principal)),
            "prompts": [dataclasses.asdict(p) for p in service.prompts(found.principal)],
            "limits": {
                "instructions": INSTRUCTIONS_MAX,
                "prompt": PROMPT_MAX,
                "description": DESCRIPTION_MAX,
            },
            "can_promote": found.principal.role.covers(Role.engineer),
        }

    return _json(await run_in_threadpool(load))


@router.put("/chat/tailoring/instructions")
async def set_instructions(body: InstructionsSet, platform: PlatformDep, found: SignedInDep) -> Response:
    service = TailoringService(platform.store)
    return _json(await run_in_threadpool(service.set_instructions, found.principal, body.about, body.style))


@router.post("/chat/tailoring/prompts")
async def save_prompt(body: SavedPromptSet, platform: PlatformDep, found: SignedInDep) -> Response:
    service = TailoringService(platform.store)
    view, created = await run_in_threadpool(
        lambda: service.save_prompt(
            found.principal, body.name, body.template, description=body.description, shared=body.shared
        )
    )
    return _json(view, 201 if created else 200)


@router.delete("/chat/tailoring/prompts/{name}")
async def delete_prompt(name: Name, platform: PlatformDep, found: SignedInDep) -> Response:
    await run_in_threadpool(TailoringService(platform.store).delete_prompt, found.principal, name)
    return Response(status_code=204)


@router.post("/chat/tailoring/prompts/{name}/fill")
async def fill_prompt(name: Name, body: PromptFill, platform: PlatformDep, found: SignedInDep) -> Response:
    service = TailoringService(platform.store)
    text = await run_in_threadpool(service.fill, found.principal, name, body.variables)
    return _json({"name": name, "text": text})


@router.post("/chat/tailoring/shared/{prompt_id}/promote")
async def promote_shared(
    prompt_id: Annotated[str, Path(max_length=32)], platform: PlatformDep, found: SignedInDep
) -> Response:
    """An engineer pushes a prompt shared in the project into the prompt registry, its author kept."""
    principal = found.principal
    principal.require(Role.engineer, "promote a shared prompt into the prompt registry")
    service = TailoringService(platform.store)
    promoted = await run_in_threadpool(
        lambda: service.promote(principal.project_id, prompt_id, platform.catalog, actor=principal.user_name)
    )
    return _json(promoted)


@router.get("/chat/conversations/{conversation_id}/tailoring")
async def conversation_switch(conversation_id: str, platform: PlatformDep, found: SignedInDep) -> Response:
    service = TailoringService(platform.store)
    on = await run_in_threadpool(service.conversation_instructions, found.principal, conversation_id)
    return _json({"instructions": on})


@router.put("/chat/conversations/{conversation_id}/tailoring")
async def switch_conversation(
    conversation_id: str, body: ConversationSwitch, platform: PlatformDep, found: SignedInDep
) -> Response:
    service = TailoringService(platform.store)
    on = await run_in_threadpool(
        service.switch_instructions, found.principal, conversation_id, body.instructions
    )
    return _json({"instructions": on})
