"""`topic`: keep a conversation on (or off) topics, by keywords and by embedding similarity to example
sentences with the local MiniLM encoder (the one /v1/embeddings serves; nothing is downloaded).

    guardrail: topic
    config:
      allow_examples: ["How do I reset my password?", "My invoice is wrong"]   # on topic
      deny_examples: ["What do you think of the election?"]                    # never
      deny_keywords: [lottery, casino]
      threshold: 0.45

A hit: a deny keyword is present, or the text is at least `threshold` similar to a deny example; or,
when allow examples or keywords are given, no allow keyword is present and the text is less than
`threshold` similar to every allow example (off-topic). The examples are embedded once per
guardrail; the text once per check (its first `MAX_CHARS` characters: the encoder reads 256 tokens).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import regex
from pydantic import Field, model_validator

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, Verdict
from fmops.guardrails.checks import run_sync
from fmops.guardrails.checks.encoder import Encoder
from fmops.scorers.embedding import cosine

MAX_CHARS = 2000

Phrase = Annotated[str, Field(min_length=1, max_length=200)]
Example = Annotated[str, Field(min_length=1, max_length=1000)]


class TopicConfig(GuardrailConfig):
    allow_keywords: list[Phrase] = Field(default_factory=list, max_length=200, description="On-topic words")
    allow_examples: list[Example] = Field(
        default_factory=list, max_length=200, description="On-topic sentences"
    )
    deny_keywords: list[Phrase] = Field(default_factory=list, max_length=200, description="Forbidden words")
    deny_examples: list[Example] = Field(
        default_factory=list, max_length=200, description="Sentences of forbidden topics"
    )
    threshold: float = Field(0.45, ge=-1, le=1, description="Cosine similarity that counts as the same topic")

    @model_validator(mode="after")
    def _something(self) -> TopicConfig:
        if not (self.allow_keywords or self.allow_examples or self.deny_keywords or self.deny_examples):
            raise ValueError("give allow or deny keywords or examples")
        return self


def _keywords(words: list[str]) -> regex.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(regex.escape(w.strip()) for w in sorted(words, key=len, reverse=True))
    return regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", regex.IGNORECASE | regex.VERSION1)


class Topic(Guardrail[TopicConfig]):
    name: ClassVar[str] = "topic"
    description: ClassVar[str] = (
        "Allow or deny topics by keywords and by embedding similarity to example sentences (local MiniLM)"
    )
    Config = TopicConfig
    slow: ClassVar[bool] = True  # a forward pass of the encoder per check; the first loads torch

    def __init__(self, config: TopicConfig) -> None:
        super().__init__(config)
        self._encoder = Encoder()
        self._allow = _keywords(config.allow_keywords)
        self._deny = _keywords(config.deny_keywords)
        self._examples: list[list[float]] | None = None

    async def acheck(self, text: str, context: Context) -> Decision:
        if self._deny is not None and self._deny.search(text) is not None:
            # Keywords are the policy's own words, not the caller's data: naming which is safe.
            return Decision.block("the text is on a denied topic (keyword)", data={"by": "keyword"})
        cfg = self.config
        on_topic_keyword = self._allow is not None and self._allow.search(text) is not None
        if not (cfg.deny_examples or (cfg.allow_examples and not on_topic_keyword)):
            # Keywords decide alone: no example to compare with.
            if self._allow is not None and not on_topic_keyword and not cfg.allow_examples:
                return Decision.block("the text is off topic (no allowed keyword)", data={"by": "keyword"})
            return Decision.allow()
        examples = cfg.deny_examples + cfg.allow_examples
        if self._examples is None:
            self._examples = await self._encoder.embed(examples)
        (vector,) = await self._encoder.embed([text[:MAX_CHARS]])
        sims = [cosine(vector, e) for e in self._examples]
        deny = max(sims[: len(cfg.deny_examples)], default=-1.0)
        allow = max(sims[len(cfg.deny_examples) :], default=-1.0)
        data = {"deny_similarity": round(deny, 4), "allow_similarity": round(allow, 4)}
        if deny >= cfg.threshold and deny >= allow:
            best = sims.index(deny) + 1
            return Decision.block(
                f"the text is on a denied topic (like deny example #{best}, similarity {deny:.2f})",
                score=deny,
                data=data,
            )
        if cfg.allow_examples and not on_topic_keyword and allow < cfg.threshold:
            return Decision.block(
                f"the text is off topic (closest allowed example: similarity {allow:.2f})",
                score=allow,
                data=data,
            )
        return Decision(Verdict.allow, score=max(allow, 0.0), data=data)

    def check(self, text: str, context: Context) -> Decision:
        """For synchronous callers (an event loop in this thread or not)."""
        return run_sync(self.acheck(text, context))
