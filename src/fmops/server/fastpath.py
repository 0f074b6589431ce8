"""The gateway's hot routes served straight from ASGI, without FastAPI's per-request machinery.

`POST /v1/chat/completions` and `POST /v1/embeddings` are where a gateway's overhead is measured
(see benchmarks/gateway_vs_litellm.py), and `POST /v1/traces` is where span ingest's is
(benchmarks/otlp_ingest.py: FastAPI's routing and dependencies were a quarter of the event loop's
CPU per OTLP batch). Dependency injection, route matching, request objects and
the application's middleware stack (FastAPI's telemetry and body-limit layers, Starlette's error
middleware) cost several hundred microseconds per call, about as much as everything else the
gateway does; so these routes are answered here, in front of the application (`front`), with
the same authentication, body limit, validation, error bodies and gateway calls as their FastAPI
twins in routers/v1_chat.py, v1_embeddings.py and v1_traces.py, which still define the OpenAPI contract (and
serve when the fast path is turned off). benchmarks/gateway_profile.py shows where the time goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fmops.auth import Role
from fmops.errors import FmopsError, UserError
from fmops.gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from fmops.platform import Platform
from fmops.server.deps import principal_for
from fmops.server.errors import (
    database_unavailable_response,
    error_response,
    fmops_error_response,
    is_database_down,
    validation_error_response,
)
from fmops.server.middleware import TooLarge, send_too_large
from fmops.server.routers import v1_chat, v1_embeddings, v1_traces

ROUTES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}
TRACES = "/v1/traces"  # OTLP: a protobuf or JSON body, not a pydantic model
MAX_SESSION_ID = 200


log = logging.getLogger(__name__)


def front(app: ASGIApp, platform: Platform, max_body_bytes: int) -> ASGIApp:
    """What the server runs: the fast path in front of the application, which serves the rest."""
    return GatewayFastPath(app, platform, max_body_bytes)


class GatewayFastPath:
    def __init__(self, app: ASGIApp, platform: Platform, max_body_bytes: int) -> None:
        self.app = app
        self.platform = platform
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")  # a lifespan scope has none
        if scope["type"] != "http" or scope["method"] != "POST" or (path not in ROUTES and path != TRACES):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            response = await self._handle(path, headers, receive)
        except FmopsError as exc:
            response = fmops_error_response(exc)
        except TooLarge:
            await send_too_large(send, self.max_body_bytes)
            return
        except DBAPIError as exc:
            # In front of FastAPI its exception handlers do not apply: answer as they would.
            if not is_database_down(exc):
                log.exception("unhandled error", exc_info=exc)
                response = _internal_error()
            else:
                response = database_unavailable_response(exc)
        except Exception as exc:
            log.exception("unhandled error", exc_info=exc)
            response = _internal_error()
        await response(scope, receive, send)

    async def _handle(self, path: str, headers: dict[bytes, bytes], receive: Receive) -> Response:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise TooLarge  # refused before anything is read, as BodyLimitMiddleware does
        authorization = headers.get(b"authorization")
        principal = await principal_for(
            self.platform, authorization.decode("latin-1") if authorization is not None else None
        )
        if path == TRACES:
            principal.require(Role.consumer)  # the router's gate
            media, coding = headers.get(b"content-type"), headers.get(b"content-encoding")
            return await v1_traces.export(
                self.platform,
                principal,
                media.decode("latin-1") if media is not None else None,
                coding.decode("latin-1") if coding is not None else None,
                lambda: _read_body(receive, self.max_body_bytes),
            )
        body = await _read_body(receive, self.max_body_bytes)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError("request body could not be parsed: send UTF-8 encoded JSON") from None
        try:
            request = ROUTES[path].model_validate_json(body)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            return validation_error_response(RequestValidationError(errors), content_type)
        gateway = self.platform.gateway
        if isinstance(request, EmbeddingRequest):
            call = v1_embeddings.respond(
                gateway, principal, request, headers.get(b"traceparent"), headers.get(b"x-fmops-tags")
            )
            return await _unless_disconnected(call, receive)
        assert isinstance(request, ChatCompletionRequest)
        session = headers.get(b"x-fmops-session-id")
        session_id = session.decode("utf-8", "replace") if session else None
        if session_id is not None and len(session_id) > MAX_SESSION_ID:
            raise UserError(
                f"x-fmops-session-id is longer than {MAX_SESSION_ID} characters", param="session_id"
            )
        chat = v1_chat.respond(
            gateway, principal, request, session_id, headers.get(b"traceparent"), headers.get(b"x-fmops-tags")
        )
        return await _unless_disconnected(chat, receive)


async def _unless_disconnected(call: Awaitable[Response], receive: Receive) -> Response:
    """Run the gateway call, but cancel it when the client goes away before the response starts.

    ASGI servers do not cancel a request whose client disconnected; without this, a caller that gave
    up would keep its upstream call, retries and backoff sleeps running for the rest of the deadline
    (minutes). The gateway records such a call as "client disconnected". Once a stream has started,
    EventStream (server/event_stream.py) watches for the disconnect itself.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await call
    except asyncio.CancelledError:
        if not gone:
            raise
        # The client left (perhaps just as the answer was ready): nobody is listening; the status
        # is for the access log.
        current.uncancel()
        return Response(status_code=499)
    finally:
        watcher.cancel()


def _internal_error() -> Response:
    return error_response(500, "internal server error; it has been logged", code="internal_error")


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refused (413) as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
