"""`topic`: keywords and embedding similarity to example sentences, with the packaged MiniLM encoder
(loaded once for the module: a few seconds)."""

from __future__ import annotations

import asyncio

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Guardrail, Stage, Verdict
from fmops.guardrails.registry import build, get_guardrail

IN = Context(Stage.input)
SUPPORT = {
    "allow_examples": ["How do I reset my password?", "My invoice is wrong", "I cannot log in to my account"],
    "deny_examples": ["Who should I vote for in the election?"],
    "deny_keywords": ["casino", "lottery ticket"],
}


@pytest.fixture(scope="module")
def support() -> Guardrail:
    return build("topic", SUPPORT)


def test_facts() -> None:
    assert get_guardrail("topic").slow


def test_on_topic_is_allowed_with_its_similarity(support: Guardrail) -> None:
    decision = support.check("I forgot my password and cannot sign in", IN)
    assert decision.verdict is Verdict.allow
    assert decision.score is not None
    assert decision.score > 0.6


def test_a_denied_topic_by_similarity(support: Guardrail) -> None:
    decision = support.check("What do you think about the presidential candidates?", IN)
    assert decision.verdict is Verdict.block
    assert decision.reason.startswith("the text is on a denied topic (like deny example #1")


def test_off_topic(support: Guardrail) -> None:
    decision = support.check("Write me a poem about the sea", IN)
    assert decision.verdict is Verdict.block
    assert decision.reason.startswith("the text is off topic")


def test_deny_keywords_decide_without_the_encoder(support: Guardrail) -> None:
    decision = support.check("Where can I buy a Lottery Ticket?", IN)
    assert decision.reason == "the text is on a denied topic (keyword)"
    assert "Lottery" not in decision.reason


def test_allow_keywords_alone() -> None:
    guard = build("topic", {"allow_keywords": ["invoice", "refund"]})
    assert guard.check("I want a refund", IN).allowed
    assert guard.check("tell me a joke", IN).reason == "the text is off topic (no allowed keyword)"
    assert not build("topic", {"deny_keywords": ["x-ray"]}).check("an X-Ray of my arm", IN).allowed


def test_acheck_from_an_event_loop(support: Guardrail) -> None:
    decision = asyncio.run(support.acheck("my bill shows a double charge", IN))
    assert decision.verdict is Verdict.allow


def test_config_errors() -> None:
    with pytest.raises(UserError, match=r"config: give allow or deny keywords or examples"):
        build("topic", {})
    with pytest.raises(UserError) as caught:
        build("topic", {"deny_keywords": [""], "threshold": 2})
    assert "config.deny_keywords.0: " in caught.value.message
    assert "config.threshold: " in caught.value.message
