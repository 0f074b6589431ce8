"""The model catalog of the caller's project: list, show, add, update, remove, and a fine-tuned
model's loop (fmops.finetune.loop)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.catalog import ModelSpec, ModelUpdate, public_view
from fmops.finetune.loop import Loop, model_loop
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate

router = APIRouter(prefix="/api/models", tags=["models"], dependencies=gate(Role.consumer))


class ModelPublic(BaseModel):
    alias: str
    provider: str
    model: str
    base_url: str | None
    api_key_set: bool
    context_window: int | None
    input_price: float
    output_price: float
    capabilities: dict[str, Any]
    fallbacks: list[str]
    timeout_seconds: float
    max_retries: int
    cache_ttl_seconds: int | None
    license: str | None
    generation: dict[str, Any] = Field(
        default_factory=dict, description="Recommended settings, used where a request sets nothing"
    )
    builtin: bool
    created_at: datetime | None


@router.get("", response_model=list[ModelPublic], summary="Models the caller's project can call")
async def list_models(platform: PlatformDep, principal: PrincipalDep) -> list[ModelPublic]:
    models = await run_in_threadpool(platform.catalog.models, principal.project_id)
    return [ModelPublic(**public_view(m)) for m in sorted(models.values(), key=lambda m: m.alias)]


# Before `/{alias:path}`, which would take "NAME/loop" for an alias: a model whose alias ends in
# "/loop" is read with GET /api/models (the list) instead.
@router.get(
    "/{alias:path}/loop",
    response_model=Loop,
    summary="A fine-tuned model's loop (engineer): traces, dataset versions, fine-tune, evals, experiments, "
    "promotions, each with its console path",
    dependencies=gate(Role.engineer),
)
async def get_model_loop(alias: str, platform: PlatformDep, principal: PrincipalDep) -> Loop:
    return await run_in_threadpool(model_loop, platform.store, principal.project_id, alias)


@router.get("/{alias:path}", response_model=ModelPublic, summary="One model's profile")
async def get_model(alias: str, platform: PlatformDep, principal: PrincipalDep) -> ModelPublic:
    entry = await run_in_threadpool(platform.catalog.get, principal.project_id, alias)
    return ModelPublic(**public_view(entry))


@router.post(
    "",
    response_model=ModelPublic,
    status_code=201,
    summary="Add a model (engineer)",
    dependencies=gate(Role.engineer),
)
def add_model(body: ModelSpec, platform: PlatformDep, principal: PrincipalDep) -> ModelPublic:
    return ModelPublic(**public_view(platform.catalog.add(principal.project_id, body)))


@router.patch(
    "/{alias:path}",
    response_model=ModelPublic,
    summary="Change a model (engineer); a new base_url needs its api_key again",
    dependencies=gate(Role.engineer),
)
def update_model(
    alias: str, body: ModelUpdate, platform: PlatformDep, principal: PrincipalDep
) -> ModelPublic:
    return ModelPublic(**public_view(platform.catalog.update(principal.project_id, alias, body)))


@router.delete(
    "/{alias:path}", status_code=204, summary="Remove a model (engineer)", dependencies=gate(Role.engineer)
)
def remove_model(alias: str, platform: PlatformDep, principal: PrincipalDep) -> Response:
    platform.catalog.remove(principal.project_id, alias)
    return Response(status_code=204)
