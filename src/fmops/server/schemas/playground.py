"""Bodies of the playground route."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fmops.prompts.playground import PlaygroundRequest
from fmops.server.schemas.base import Output

__all__ = ["PlaygroundBody", "PlaygroundPublic"]

PlaygroundBody = PlaygroundRequest


class TargetPublic(Output):
    prompt: str | None
    version: int | None = Field(description="The prompt version that ran")
    model: str
    params: dict[str, Any] = Field(description="The prompt version's params with the target's over them")


class CellPublic(Output):
    input: int = Field(description="Index into inputs")
    target: int = Field(description="Index into targets")
    output: str | None = Field(description="The answer's text")
    message: dict[str, Any] | None = Field(description="The whole assistant message")
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    trace_id: str | None
    error: str | None = Field(description="Why this cell failed; the other cells still ran")
    error_code: str | None


class PlaygroundPublic(Output):
    targets: list[TargetPublic]
    cells: list[CellPublic] = Field(description="Input-major: every target of input 0, then of input 1, ...")
