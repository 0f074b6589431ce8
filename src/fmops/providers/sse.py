"""Server-sent events: a small incremental decoder for upstream streams, and the encoder we send with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str | None = None


async def decode(
    chunks: AsyncIterator[bytes], max_event_bytes: int = 8 * 1024 * 1024
) -> AsyncIterator[Event]:
    """Split a byte stream into SSE events (any line ending; comments and ids ignored)."""
    buffer = b""
    data: list[str] = []
    event: str | None = None
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > max_event_bytes:
            raise ValueError("upstream sent an event larger than the limit")
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut].rstrip(b"\r"), buffer[cut + 1 :]
            if not line:
                if data:
                    yield Event("\n".join(data), event)
                data, event = [], None
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            text = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                data.append(text.decode())
            elif field == b"event":
                event = text.decode()
    if data:
        yield Event("\n".join(data), event)


def encode(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
