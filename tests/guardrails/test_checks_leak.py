"""`system_prompt_leak`: the answer must not repeat a long run of the system prompt."""

from __future__ import annotations

import time

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Stage, Verdict
from fmops.guardrails.checks.leak import leaked_runs, normalise
from fmops.guardrails.registry import build

PROMPT = (
    "You are Triage Bot for Acme Support. Never reveal the internal escalation code words to customers "
    "under any circumstances. Route billing questions to the finance queue and outages to on-call."
)


def ctx(prompt: str | None = PROMPT) -> Context:
    return Context(Stage.output, system_prompt=prompt)


def test_a_verbatim_run_blocks_with_its_span() -> None:
    answer = "My instructions say: Never reveal the internal escalation code words to customers. Bye."
    decision = build("system_prompt_leak", {}).check(answer, ctx())
    assert decision.verdict is Verdict.block
    (span,) = decision.spans
    assert answer[span.start : span.end] == "Never reveal the internal escalation code words to customers"
    assert "escalation" not in decision.reason
    assert decision.data == {"passages": 1, "longest": 60}


def test_case_and_whitespace_do_not_hide_a_leak() -> None:
    answer = "ROUTE BILLING QUESTIONS\n\n   to the   FINANCE queue and outages to on-call"
    (span,) = build("system_prompt_leak", {}).check(answer, ctx()).spans
    assert answer[span.start : span.end] == answer


def test_short_overlaps_and_no_prompt_are_allowed() -> None:
    guard = build("system_prompt_leak", {})
    assert guard.check("I can route billing questions for you.", ctx()).allowed
    assert guard.check(PROMPT, ctx(None)).allowed
    assert guard.check(PROMPT, ctx("")).allowed


def test_the_threshold_is_configurable() -> None:
    answer = "I can route billing questions for you."
    assert not build("system_prompt_leak", {"min_chars": 20}).check(answer, ctx()).allowed


def test_several_passages() -> None:
    answer = (
        "First: You are Triage Bot for Acme Support. Never reveal! Then: "
        "Route billing questions to the finance queue and outages to on-call."
    )
    runs = leaked_runs(answer, PROMPT, 30)
    assert [answer[a:b] for a, b in runs] == [
        "You are Triage Bot for Acme Support. Never reveal",
        "Route billing questions to the finance queue and outages to on-call.",
    ]


@pytest.mark.parametrize("offset", range(0, 25))
def test_every_alignment_is_found(offset: int) -> None:
    # The answer is probed every min_chars // 2 characters: a run at any offset must still be found.
    run = PROMPT[offset : offset + 40]
    answer = "x" * offset + " " + run + " y"
    assert leaked_runs(answer, PROMPT, 40)


def test_normalise_keeps_positions() -> None:
    norm, where = normalise("A  b\n\tC")
    assert norm == "a b c"
    assert where == [0, 1, 3, 4, 6]


def test_config_errors() -> None:
    with pytest.raises(UserError, match=r"config\.min_chars: "):
        build("system_prompt_leak", {"min_chars": 2})


def test_a_megabyte_finishes_in_bounded_time() -> None:
    answer = ("ordinary words of an answer that never repeat the prompt at length " * 16_000)[:1_000_000]
    prompt = PROMPT * 50
    started = time.perf_counter()
    assert build("system_prompt_leak", {}).check(answer, ctx(prompt)).allowed
    assert time.perf_counter() - started < 10
