"""POST /v1/chat/completions: the OpenAI-compatible chat endpoint, streaming included."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Response

from fmops.auth import Principal, Role
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.service import Gateway
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.event_stream import EventStream
from fmops.tracing.tags import TAGS_HEADER, TAGS_HEADER_MAX_LENGTH, TAGS_HEADER_PATTERN, parse_tags_header

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=gate(Role.consumer))

SessionHeader = Annotated[str | None, Header(alias="x-fmops-session-id", max_length=200)]
# W3C trace context: the call's span joins the caller's trace (an invalid value is ignored).
TraceParentHeader = Annotated[str | None, Header(alias="traceparent", max_length=200)]
# Tags for the call's span (fmops.tracing.tags): the grammar is in the schema, checked by
# `parse_tags_header` (not by FastAPI), so that both routes and the fast path answer a bad value alike.
TagsHeader = Annotated[
    str | None,
    Header(
        alias=TAGS_HEADER.lower(),
        description="Tags for the call's span, comma-separated; joined with metadata.tags",
        json_schema_extra={"pattern": TAGS_HEADER_PATTERN, "maxLength": TAGS_HEADER_MAX_LENGTH},
    ),
]


def header_tags(value: str | bytes | None) -> tuple[str, ...]:
    """The tags of an X-Fmops-Tags header (none when it is absent or empty)."""
    if not value:
        return ()
    return parse_tags_header(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)


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
    tags: TagsHeader = None,
) -> Response:
    return await respond(platform.gateway, principal, body, session_id, traceparent, tags)


async def respond(
    gateway: Gateway,
    principal: Principal,
    body: ChatCompletionRequest,
    session_id: str | None,
    traceparent: str | bytes | None = None,
    tags: str | bytes | None = None,
) -> Response:
    """Run the call and shape the HTTP answer; shared with the ASGI fast path (server/fastpath.py).
    `tags` is the X-Fmops-Tags header, unparsed."""
    checked = header_tags(tags)
    if body.stream:
        result = await gateway.stream(principal, body, session_id, traceparent, tags=checked)
        return EventStream(
            result.events,
            headers={
                "x-fmops-trace-id": result.record.trace_id,
                "x-fmops-cache": "hit" if result.record.cache_hit else "miss",
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
            },
        )
    done = await gateway.chat(principal, body, session_id, traceparent, tags=checked)
    return CompletionResponse(orjson.dumps(done.body), done.record.trace_id, done.record.cache_hit)


class CompletionResponse(Response):
    """A chat completion's 200: the headers Starlette's `Response(body, media_type="application/json",
    headers={...})` would send, in its order, built directly (its `init_headers` re-encodes and
    re-scans them on every call: a few microseconds of each plain request)."""

    media_type = "application/json"

    def __init__(self, content: bytes, trace_id: str, cache_hit: bool) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [
            (b"x-fmops-trace-id", trace_id.encode("latin-1")),
            (b"x-fmops-cache", b"hit" if cache_hit else b"miss"),
            (b"content-length", b"%d" % len(content)),
            (b"content-type", b"application/json"),
        ]
