"""GET /v1/models: the models and endpoints a key can call, in OpenAI's list shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.endpoints.service import served_endpoints
from fmops.errors import NotFound
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=gate(Role.consumer))
ENDPOINT_OWNER = "fmops-endpoint"  # how chat clients tell an endpoint from a model


def _openai_model(alias: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": created, "owned_by": owner}


def _listing(platform: Any, principal: Principal) -> dict[str, dict[str, Any]]:
    project_id = principal.project_id
    models = platform.catalog.models(project_id)
    found = {
        m.alias: _openai_model(m.alias, int(m.created_at.timestamp()) if m.created_at else 0, m.provider)
        for m in models.values()
    }
    for name, created in served_endpoints(platform.store, project_id, principal):
        found.setdefault(name, _openai_model(name, int(created.timestamp()), ENDPOINT_OWNER))
    return found


@router.get("/models", summary="List models and endpoints (OpenAI-compatible)")
async def list_models(platform: PlatformDep, principal: PrincipalDep) -> dict[str, Any]:
    found = await run_in_threadpool(_listing, platform, principal)
    return {"object": "list", "data": [found[name] for name in sorted(found)]}


@router.get("/models/{model_id:path}", summary="Retrieve a model or endpoint (OpenAI-compatible)")
async def get_model(model_id: str, platform: PlatformDep, principal: PrincipalDep) -> dict[str, Any]:
    found = await run_in_threadpool(_listing, platform, principal)
    if model_id not in found:
        raise NotFound(f"model {model_id!r} does not exist", param="model", code="model_not_found")
    return found[model_id]
