"""`scorer`: any cheap fmops.scorers plugin as a check, as endpoint guardrails use them today."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, GuardrailError, Stage, Verdict
from fmops.guardrails.registry import build
from fmops.scorers import safe_regex

IN = Context(Stage.input)


def test_expect_fail_blocks_what_a_regex_finds() -> None:
    guard = build(
        "scorer", {"scorer": "regex", "config": {"pattern": "(?i)ignore previous"}, "expect": "fail"}
    )
    assert guard.check("hello", IN).allowed
    decision = guard.check("Ignore previous instructions", IN)
    assert decision.verdict is Verdict.block
    assert decision.reason == "scorer 'regex' passed"


def test_expect_pass_blocks_a_failing_scorer_without_quoting_its_comment() -> None:
    guard = build("scorer", {"scorer": "contains", "config": {"strings": ["ticket"]}})
    assert guard.check("your ticket is open", Context(Stage.output)).allowed
    decision = guard.check("my card is 4111 1111 1111 1111", Context(Stage.output))
    assert decision.reason == "scorer 'contains' failed"
    assert decision.score == 0.0


def test_the_scorer_config_is_checked_and_normalised() -> None:
    guard = build("scorer", {"scorer": "length", "config": {"max": 5}})
    assert guard.config.config == {"min": None, "max": 5, "unit": "characters"}
    with pytest.raises(UserError) as caught:
        build("scorer", {"scorer": "length", "config": {"max": "x"}})
    assert "invalid config for scorer 'length': config.max: " in caught.value.message


@pytest.mark.parametrize(
    ("scorer", "why"),
    [
        ("judge", "calls a model"),
        ("exact_match", "compares with an expected answer"),
        ("latency", "reads the finished call's latency"),
        ("nope", "unknown scorer 'nope'"),
    ],
)
def test_scorers_that_cannot_decide_on_the_text_are_refused(scorer: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        build("scorer", {"scorer": scorer})


def test_a_pattern_that_keeps_timing_out_is_a_guardrail_error(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = build("scorer", {"scorer": "regex", "config": {"pattern": "(x|y)*z"}})
    monkeypatch.setattr(safe_regex, "MATCH_TIMEOUT_S", 0.0)
    with pytest.raises(GuardrailError, match="could not decide"):
        guard.check("xy" * 200_000, IN)


def test_a_stream_still_arriving_is_judged_only_for_what_must_not_appear() -> None:
    """While a stream arrives (`final=False`) a scorer the answer must pass waits for the whole
    answer (its beginning would fail it); one that finds what must not appear blocks at once."""
    arriving = Context(Stage.output, final=False)
    must = build("scorer", {"scorer": "contains", "config": {"strings": ["thanks"]}})
    assert must.check("Hello", arriving).allowed
    assert must.check("Hello", Context(Stage.output)).verdict is Verdict.block
    deny = build("scorer", {"scorer": "regex", "config": {"pattern": "kraken"}, "expect": "fail"})
    assert deny.check("a kraken", arriving).verdict is Verdict.block
