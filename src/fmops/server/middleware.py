"""ASGI middleware: request body size limit (413 before the body is read in full)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _message(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes (setting FMOPS_MAX_BODY_BYTES)"


class TooLarge(HTTPException):
    """An HTTPException so that FastAPI's body reader re-raises it instead of turning it into a 400."""

    def __init__(self, limit: int = 0) -> None:
        super().__init__(413, _message(limit))


async def send_too_large(send: Send, limit: int) -> None:
    """Answer 413 in the OpenAI error shape (the gateway's fast path does too, in front of the app)."""
    start, body = _payload_too_large(limit)
    await send(start)
    await send({"type": "http.response.body", "body": body})


def _payload_too_large(limit: int) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps(
        {
            "error": {
                "message": _message(limit),
                "type": "invalid_request_error",
                "param": None,
                "code": "payload_too_large",
            }
        }
    )
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_too_large(send, self.max_bytes)
