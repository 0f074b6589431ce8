"""`length`: a maximum size of the input or the answer, in characters and/or estimated tokens. Cheap
enough to run first, so an oversized request is refused before any costlier check reads it."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig

Limit = Annotated[int, Field(ge=1, le=100_000_000)]


def estimate_tokens(text: str) -> int:
    """About four characters a token in English for the BPE tokenizers of today's models; at least one
    a word, so text of short words (or CJK, one character a word) is not undercounted."""
    return max(-(-len(text) // 4), len(text.split()))


class LengthConfig(GuardrailConfig):
    max_chars: Limit | None = Field(None, description="At most this many characters")
    max_tokens: Limit | None = Field(
        None, description="At most this many tokens (estimated: 4 characters a token)"
    )

    @model_validator(mode="after")
    def _some(self) -> LengthConfig:
        if self.max_chars is None and self.max_tokens is None:
            raise ValueError("set max_chars, max_tokens or both")
        return self


class Length(Guardrail[LengthConfig]):
    name: ClassVar[str] = "length"
    description: ClassVar[str] = (
        "A maximum length of the input or the answer, in characters or estimated tokens"
    )
    Config = LengthConfig

    def check(self, text: str, context: Context) -> Decision:
        what = "the input" if context.stage == "input" else "the answer"
        cfg = self.config
        if cfg.max_chars is not None and len(text) > cfg.max_chars:
            return Decision.block(
                f"{what} is {len(text):,} characters; at most {cfg.max_chars:,} are allowed",
                data={"chars": len(text)},
            )
        if cfg.max_tokens is not None:
            tokens = estimate_tokens(text)
            if tokens > cfg.max_tokens:
                return Decision.block(
                    f"{what} is about {tokens:,} tokens; at most {cfg.max_tokens:,} are allowed",
                    data={"tokens": tokens},
                )
        return Decision.allow()
