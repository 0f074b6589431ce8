"""GET /v1/models: the models a key can call, in OpenAI's list shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.errors import NotFound
from fmops.server.deps import PlatformDep, PrincipalDep, gate

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=gate(Role.consumer))


def _openai_model(alias: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": created, "owned_by": owner}


@router.get("/models", summary="List models (OpenAI-compatible)")
async def list_models(platform: PlatformDep, principal: PrincipalDep) -> dict[str, Any]:
    models = await run_in_threadpool(platform.catalog.models, principal.project_id)
    data = [
        _openai_model(m.alias, int(m.created_at.timestamp()) if m.created_at else 0, m.provider)
        for m in sorted(models.values(), key=lambda m: m.alias)
    ]
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}", summary="Retrieve a model (OpenAI-compatible)")
async def get_model(model_id: str, platform: PlatformDep, principal: PrincipalDep) -> dict[str, Any]:
    models = await run_in_threadpool(platform.catalog.models, principal.project_id)
    if model_id not in models:
        raise NotFound(f"model {model_id!r} does not exist", param="model", code="model_not_found")
    m = models[model_id]
    return _openai_model(m.alias, int(m.created_at.timestamp()) if m.created_at else 0, m.provider)
