"""POST /v1/embeddings: OpenAI-compatible embeddings (float or base64)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from fmops.auth import Principal, Role
from fmops.gateway.schemas import EmbeddingRequest
from fmops.gateway.service import Gateway
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.routers.v1_chat import TagsHeader, TraceParentHeader, header_tags

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=gate(Role.consumer))


@router.post(
    "/embeddings",
    summary="Create embeddings (OpenAI-compatible)",
    response_model=None,
    responses=error_responses(404, 429, 502, 503, 504),  # no such model; limits; upstream
)
async def embeddings(
    body: EmbeddingRequest,
    platform: PlatformDep,
    principal: PrincipalDep,
    traceparent: TraceParentHeader = None,
    tags: TagsHeader = None,
) -> Response:
    return await respond(platform.gateway, principal, body, traceparent, tags)


async def respond(
    gateway: Gateway,
    principal: Principal,
    body: EmbeddingRequest,
    traceparent: str | bytes | None = None,
    tags: str | bytes | None = None,
) -> Response:
    """Shared with the ASGI fast path (server/fastpath.py); `tags` is the X-Fmops-Tags header."""
    done = await gateway.embeddings(principal, body, traceparent, tags=header_tags(tags))
    return Response(
        orjson.dumps(done.body),
        media_type="application/json",
        headers={"x-fmops-trace-id": done.record.trace_id},
    )
