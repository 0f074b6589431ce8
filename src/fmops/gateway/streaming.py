"""Streaming pieces of the gateway: reading and closing an upstream stream, rebuilding the message
its deltas spell (for the trace and the cache), error events, and replaying a cached answer as a
stream."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from fmops.errors import FmopsError
from fmops.providers.base import JSON
from fmops.providers.sse import DONE, encode

log = logging.getLogger(__name__)


async def next_chunk(iterator: AsyncIterator[JSON]) -> JSON | None:
    """The upstream's next chunk, or None once it has ended."""
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


async def close_upstream(iterator: AsyncIterator[JSON]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("upstream stream did not close cleanly", exc_info=True)


def stream_error(message: str, error_type: str) -> bytes:
    """An error event: once a stream has begun, its status line can no longer say what went wrong."""
    return encode({"error": {"message": message, "type": error_type, "param": None, "code": "stream_error"}})


def guardrail_error(exc: FmopsError) -> bytes:
    """The event that cuts a stream a guardrail blocked: the error body a non-streamed call gets."""
    error = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}
    return encode({"error": error})


def delta_text(chunk: JSON) -> str:
    """The answer text a chunk adds (its first choice's)."""
    choices = chunk.get("choices") or ()
    if not choices:
        return ""
    return str((choices[0].get("delta") or {}).get("content") or "")


class StreamAccumulator:
    """Rebuilds the assistant message from stream deltas, for the trace and the cache."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.tool_calls: dict[int, JSON] = {}
        self.finish_reason: str | None = None
        self.id: str | None = None
        self.created: int | None = None

    def add(self, chunk: JSON) -> None:
        self.id = self.id or chunk.get("id")
        self.created = self.created or chunk.get("created")
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(
                    int(call.get("index", 0)),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def text(self) -> str:
        return "".join(self.content)

    def message(self) -> JSON:
        msg: JSON = {"role": "assistant", "content": "".join(self.content) or None}
        if self.tool_calls:
            msg["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        return msg

    def response(self, model: str, usage: JSON | None) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": self.message(), "finish_reason": self.finish_reason or "stop"}
            ],
            "usage": usage,
        }


async def replay(cached: JSON, include_usage: bool) -> AsyncIterator[bytes]:
    """A cached answer, sent as a stream: the whole message in one chunk."""
    choice = (cached.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    yield encode(
        {
            "id": cached.get("id"),
            "object": "chat.completion.chunk",
            "created": cached.get("created"),
            "model": cached.get("model"),
            "choices": [
                {
                    "index": 0,
                    "delta": {k: v for k, v in message.items() if v is not None},
                    "finish_reason": choice.get("finish_reason", "stop"),
                }
            ],
        }
    )
    if include_usage and cached.get("usage"):
        yield encode(
            {
                "id": cached.get("id"),
                "object": "chat.completion.chunk",
                "created": cached.get("created"),
                "model": cached.get("model"),
                "choices": [],
                "usage": cached["usage"],
            }
        )
    yield DONE
