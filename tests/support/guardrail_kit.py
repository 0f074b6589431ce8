"""Guardrails and a policy source for the engine's tests: small third-party-style plugins (the
built-in checks are tested with their own modules), and policies as the serving lookup returns them."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fmops.guardrails.base import (
    Context,
    Decision,
    Guardrail,
    GuardrailConfig,
    GuardrailError,
    Stage,
    TextSpan,
)
from fmops.guardrails.policy import Action, Policy, Scope

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class Emails(Guardrail[GuardrailConfig]):
    """Finds e-mail addresses (spans, so a policy may redact them)."""

    name = "test-emails"
    description = "e-mail addresses"
    spans = True

    def check(self, text: str, context: Context) -> Decision:
        found = tuple(TextSpan(m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
        return Decision.redact("found an e-mail address", found) if found else Decision.allow()


class WordsConfig(GuardrailConfig):
    words: list[str]


class Words(Guardrail[WordsConfig]):
    """Blocks a text holding one of its words; notes the thread it ran on."""

    name = "test-words"
    description = "denied words"
    Config = WordsConfig
    threads: list[str] = []  # noqa: RUF012 - test evidence, class-wide on purpose

    def check(self, text: str, context: Context) -> Decision:
        Words.threads.append(threading.current_thread().name)
        lowered = text.lower()
        if any(w in lowered for w in self.config.words):
            return Decision.block("the text holds a denied word")
        return Decision.allow()


class Sleepy(Words):
    """The same, computing for a while: the engine runs it in a worker thread."""

    name = "test-sleepy"
    slow = True

    def check(self, text: str, context: Context) -> Decision:
        time.sleep(0.01)
        return super().check(text, context)


class Broken(Guardrail[GuardrailConfig]):
    name = "test-broken"
    description = "cannot decide"

    def check(self, text: str, context: Context) -> Decision:
        raise GuardrailError("the classifier is not loaded")


class JudgeConfig(GuardrailConfig):
    model: str
    timeout: float = 5.0


class Judge(Guardrail[JudgeConfig]):
    """Asks a model through `context.chat`; the answer UNSAFE blocks."""

    name = "test-judge"
    description = "a model's verdict"
    Config = JudgeConfig
    needs_model = True

    def check(self, text: str, context: Context) -> Decision:
        raise GuardrailError("a judge is awaited")

    async def acheck(self, text: str, context: Context) -> Decision:
        assert context.chat is not None
        answer = await context.chat(
            {"model": self.config.model, "messages": [{"role": "user", "content": text}]}
        )
        verdict = str(answer["choices"][0]["message"]["content"])
        return Decision.block("the judge found it unsafe") if "UNSAFE" in verdict else Decision.allow()


class Stall(Judge):
    name = "test-stall"

    async def acheck(self, text: str, context: Context) -> Decision:
        await asyncio.sleep(60)
        return Decision.allow()


def policy(
    guardrail: Guardrail[Any],
    name: str,
    action: Action | str = Action.block,
    *,
    on: str = "input",
    scope: Scope = Scope.project,
    target: str = "",
    fail_open: bool = False,
) -> Policy:
    stages = frozenset({Stage.input, Stage.output}) if on == "both" else frozenset({Stage(on)})
    return Policy(name, scope, target, stages, Action(action), guardrail, fail_open)


@dataclass
class StaticPolicies:
    """The serving lookup over a fixed list: the project's, the model's and the endpoint's."""

    items: list[Policy] = field(default_factory=list)
    asked: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def policies(
        self, project_id: str, *, model: str | None, endpoint: str | None, generation: int | None = None
    ) -> tuple[Policy, ...]:
        self.asked.append((project_id, model, endpoint))
        return tuple(
            p
            for p in self.items
            if p.scope is Scope.project
            or (p.scope is Scope.model and p.target == model)
            or (p.scope is Scope.endpoint and p.target == endpoint)
        )


def emails() -> Emails:
    return Emails(GuardrailConfig())


def words(*denied: str) -> Words:
    return Words(WordsConfig(words=list(denied)))
