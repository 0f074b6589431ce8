"""POST /v1/chat/completions: the OpenAI-compatible chat endpoint, streaming included."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse

from fmops.auth import Principal, Role
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.service import Gateway
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=gate(Role.consumer))

SessionHeader = Annotated[str | None, Header(alias="x-fmops-session-id", max_length=200)]
# W3C trace context: the call's span joins the caller's trace (an invalid value is ignored).
TraceParentHeader = Annotated[str | None, Header(alias="traceparent", max_length=200)]


@router.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI-compatible; `stream: true` for server-sent events)",
    response_model=None,
    # no such model; an endpoint misconfigured, or its output refused; limits; upstream
    responses=error_responses(404, 409, 422, 429, 502, 503, 504),
)
async def chat_completions(
    body: ChatCompletionRequest,
    platform: PlatformDep,
    principal: PrincipalDep,
    session_id: SessionHeader = None,
    traceparent: TraceParentHeader = None,
) -> Response:
    return await respond(platform.gateway, principal, body, session_id, traceparent)


async def respond(
    gateway: Gateway,
    principal: Principal,
    body: ChatCompletionRequest,
    session_id: str | None,
    traceparent: str | bytes | None = None,
) -> Response:
    """Run the call and shape the HTTP answer; shared with the ASGI fast path (server/fastpath.py)."""
    if body.stream:
        result = await gateway.stream(principal, body, session_id, traceparent)
        return StreamingResponse(
            result.events,
            media_type="text/event-stream",
            headers={
                "x-fmops-trace-id": result.record.trace_id,
                "x-fmops-cache": "hit" if result.record.cache_hit else "miss",
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
            },
        )
    done = await gateway.chat(principal, body, session_id, traceparent)
    return Response(
        orjson.dumps(done.body),
        media_type="application/json",
        headers={
            "x-fmops-trace-id": done.record.trace_id,
            "x-fmops-cache": "hit" if done.record.cache_hit else "miss",
        },
    )
