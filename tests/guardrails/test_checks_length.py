"""`length`: a maximum size in characters or estimated tokens."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Stage, Verdict
from fmops.guardrails.checks.length import estimate_tokens
from fmops.guardrails.registry import build


def test_characters() -> None:
    guard = build("length", {"max_chars": 10})
    assert guard.check("x" * 10, Context(Stage.input)).allowed
    decision = guard.check("x" * 11, Context(Stage.input))
    assert decision.verdict is Verdict.block
    assert decision.reason == "the input is 11 characters; at most 10 are allowed"


def test_tokens_on_the_answer() -> None:
    decision = build("length", {"max_tokens": 5}).check("one two three four five six", Context(Stage.output))
    assert decision.reason == "the answer is about 7 tokens; at most 5 are allowed"


def test_the_token_estimate() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("a b c d") == 4  # at least one a word


def test_config_errors_name_each_field() -> None:
    with pytest.raises(UserError) as caught:
        build("length", {"max_chars": -5, "max_tokens": 0})
    assert "config.max_chars: " in caught.value.message
    assert "config.max_tokens: " in caught.value.message


def test_a_megabyte() -> None:
    assert not build("length", {"max_tokens": 1000}).check("word " * 200_000, Context(Stage.input)).allowed
