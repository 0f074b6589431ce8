"""OTLP/HTTP trace ingest at `POST /v1/traces`: any OpenTelemetry-instrumented app sends its spans here.

Point an OTLP exporter at `<fmops>/v1/traces` with `Authorization: Bearer <an fmops key>`; spans
land in the key's project, protobuf or JSON, gzip or not. A bad span is skipped and reported in
`partial_success`; the rest are stored, and sending a batch again stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import Unavailable
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import ErrorBody
from fmops.tracing.otlp.decode import JSON, PROTOBUF, decompress, media_type
from fmops.tracing.otlp.ingest import Ingested, ingest, response_body

router = APIRouter(tags=["traces"], dependencies=gate(Role.consumer))

# Bodies larger than this (or compressed) are decoded in a worker thread, so one big batch does not
# hold up the event loop (and every other request); small ones are not worth the thread hop.
OFFLOAD_BYTES = 256 * 1024
# While the trace store is behind, a batch waits this long for room before it is refused (503): held
# requests slow the exporters down at no cost, where refusals had them resend at once.
BUSY_WAIT_SECONDS = 2.0

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "An OTLP ExportTraceServiceRequest; `Content-Encoding: gzip` is accepted.",
    "content": {
        PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
        JSON: {
            "schema": {
                "type": "object",
                "description": "OTLP/JSON: ids as hex, camelCase field names",
                # null is an empty list, as in protobuf's JSON mapping (OTLP/JSON follows it).
                "properties": {"resourceSpans": {"type": ["array", "null"], "items": {"type": "object"}}},
            }
        },
    },
}
_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "partialSuccess": {
            "type": "object",
            "properties": {"rejectedSpans": {"type": "string"}, "errorMessage": {"type": "string"}},
        }
    },
}


def _decode(body: bytes, encoding: str | None, limit: int, media: str, principal: Principal) -> Ingested:
    plain = decompress(body, encoding, limit)
    return ingest(plain, media, principal.project_id, principal.key_id)


@router.post(
    "/v1/traces",
    summary="Ingest OpenTelemetry spans (OTLP/HTTP, protobuf or JSON)",
    response_class=Response,
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        200: {
            "description": "Stored; `partialSuccess` counts and describes the spans that were not",
            "content": {
                PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
                JSON: {"schema": _RESPONSE},
            },
        },
        415: {"model": ErrorBody, "description": "Content-Type or Content-Encoding not accepted"},
        503: {"model": ErrorBody, "description": "The trace store is busy or unreachable; see Retry-After"},
    },
)
async def ingest_traces(request: Request, platform: PlatformDep, principal: PrincipalDep) -> Response:
    headers = request.headers
    return await export(
        platform, principal, headers.get("content-type"), headers.get("content-encoding"), request.body
    )


async def export(
    platform: Platform,
    principal: Principal,
    content_type: str | None,
    encoding: str | None,
    read_body: Callable[[], Awaitable[bytes]],
) -> Response:
    """One OTLP export request, from its headers and body to the ExportTraceServiceResponse.

    The FastAPI route above and the server's fast path (server/fastpath.py) both answer with this."""
    media = media_type(content_type)
    if not await platform.tracer.room(BUSY_WAIT_SECONDS):
        # Past what the store writes in about a second, even after waiting: refuse rather than
        # queue, so accepted spans stay queryable within seconds; exporters retry after Retry-After.
        busy = Unavailable("the trace store is busy; retry this batch shortly")
        busy.retry_after = 1
        raise busy
    body = await read_body()
    limit = platform.settings.max_body_bytes
    if len(body) > OFFLOAD_BYTES or encoding not in (None, "", "identity"):  # gzip may inflate 1000x
        result = await run_in_threadpool(_decode, body, encoding, limit, media, principal)
    else:
        result = _decode(body, encoding, limit, media, principal)
    if result.rows:
        if platform.settings.trace_durability == "strict":
            platform.tracer.admit(len(result.rows))  # 503 at once while the store cannot keep up
            await platform.tracer.commit(result.rows, ingested=True)
        else:
            platform.tracer.record_many(result.rows, ingested=True)
    return Response(response_body(result, media), media_type=media)
