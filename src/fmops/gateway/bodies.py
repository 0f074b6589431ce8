"""What the gateway reads from and writes into OpenAI-shaped bodies: token estimates, usage, the
answer's messages, embedding vectors. Pure functions, no state."""

from __future__ import annotations

import base64
import struct
from typing import Any

from fmops.gateway.schemas import ChatCompletionRequest
from fmops.providers.base import JSON


def estimate_usage(req: ChatCompletionRequest) -> tuple[int, int]:
    """(prompt, output) tokens a call may use, before it runs: ~4 characters a token, and its output
    limit (256 when it sets none). For the limits' admission: tokens per minute and budget holds."""
    chars = 0
    for message in req.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
        elif isinstance(message.content, list):
            chars += sum(len(str(part.get("text", ""))) for part in message.content)
    return chars // 4, req.output_limit or 256


def usage_of(body: JSON) -> tuple[int, int]:
    """(prompt, completion) tokens a response reports; 0 for what it leaves out."""
    usage = body.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def output_of(response: JSON) -> Any:
    """The answer's message (a list of them when there are several choices), as traced."""
    choices = response.get("choices") or []
    return [c.get("message") for c in choices] if len(choices) != 1 else choices[0].get("message")


def encode_vector(vector: list[float], fmt: str) -> list[float] | str:
    """An embedding as the caller asked: floats, or base64 of little-endian float32."""
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
