"""The guardrail plugin interface: what a check sees, what it decides, how its config is checked.

A guardrail is a class registered under the `fmops.guardrails` entry-point group (the built-ins exactly as a
third party's). It declares a name, a description, a pydantic config model (checked when a policy is
created, so a bad config is a 400 naming the field) and facts the engine reads instead of branching on
names:

stages       where it can run: "input" (what the caller sent), "output" (the model's answer) or both
spans        it returns the spans of text it found, so a policy may `redact` or `mask` them
slow         it computes for milliseconds or more (a local encoder): run in a worker thread
needs_model  it calls a model through the gateway (a judge): `acheck` awaits `context.chat`
whole        (a property, as it may follow the config) it judges only a whole answer

`check(text, context)` is called with the text under check: the caller's message contents joined
(input) or the answer so far (output; while streaming, the accumulated text). It returns a `Decision`:
`allow`, or what the guardrail recommends (`block`, `redact` with the spans, `flag`) with a reason. The
*policy* that runs it decides what a non-allow decision does (its `action`); the reason is shown to the
caller and kept on the trace, so it must never contain the matched text itself (a secret, an e-mail).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

JSON = dict[str, Any]
# A cheap check of a text up to this long runs inline on the event loop (fmops.guardrails.engine); a
# longer one (a 1 MB input takes a pattern scan hundreds of milliseconds) in a worker thread, so that
# it does not stall every other call on the loop.
INLINE_CHARS = 32_768
# Sends an OpenAI chat-completions body through the gateway (as the policy's principal) and returns
# the response body; a judge guardrail's only way to a model.
AsyncChatFn = Callable[[JSON], Awaitable[JSON]]


class Verdict(StrEnum):
    allow = "allow"
    block = "block"
    redact = "redact"
    flag = "flag"


class Stage(StrEnum):
    input = "input"
    output = "output"


@dataclass(frozen=True, slots=True)
class TextSpan:
    """Where in the checked text something was found, and what (e.g. "email"); never the text."""

    start: int
    end: int
    type: str


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""  # shown to the caller and kept on the trace: never the matched text
    spans: tuple[TextSpan, ...] = ()
    score: float | None = None  # a classifier's or judge's confidence, when it has one
    data: JSON = field(default_factory=dict)  # small, JSON-serialisable detail for the span

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.allow

    @classmethod
    def allow(cls, reason: str = "") -> Decision:
        return cls(Verdict.allow, reason)

    @classmethod
    def block(cls, reason: str, **kw: Any) -> Decision:
        return cls(Verdict.block, reason, **kw)

    @classmethod
    def redact(cls, reason: str, spans: tuple[TextSpan, ...], **kw: Any) -> Decision:
        return cls(Verdict.redact, reason, spans, **kw)

    @classmethod
    def flag(cls, reason: str, **kw: Any) -> Decision:
        return cls(Verdict.flag, reason, **kw)


@dataclass(frozen=True)
class Context:
    """What a check may know besides the text. `system_prompt` is the endpoint's rendered system
    message (for the leak check); `chat` reaches a gateway model (for judges); `final` is False while a
    stream is still arriving (an output check that needs the whole answer, e.g. a JSON Schema, waits)."""

    stage: Stage
    system_prompt: str | None = None
    endpoint: str | None = None
    model: str | None = None
    final: bool = True
    chat: AsyncChatFn | None = None


class GuardrailConfig(BaseModel):
    """Base of every guardrail's config: unknown keys are refused, so a typo is a 400, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=GuardrailConfig)


class GuardrailError(Exception):
    """The check could not decide (a judge timed out, a pattern ran out of time); the policy's
    `on_error` (fail open or closed) decides, and the trace says which."""


class Guardrail(ABC, Generic[C]):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[GuardrailConfig]] = GuardrailConfig
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.input, Stage.output})
    spans: ClassVar[bool] = False
    slow: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False

    def __init__(self, config: C) -> None:
        self.config = config

    @property
    def whole(self) -> bool:
        """It judges only a whole answer (what the answer must be or hold: JSON, a phrase, a minimum
        length), so it allows a stream still arriving (`context.final` False); a stream under an
        output policy that blocks on it is run whole and replayed, so nothing is sent before it has
        judged (fmops.guardrails.engine.whole_stream)."""
        return False

    @abstractmethod
    def check(self, text: str, context: Context) -> Decision:
        """Judge `text`; raise GuardrailError when it cannot decide."""

    async def acheck(self, text: str, context: Context) -> Decision:
        """The engine calls this; a guardrail that awaits a model (needs_model) overrides it."""
        return self.check(text, context)
