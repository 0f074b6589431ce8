"""`pii` finds personal data with fmops.pii (curation's detector) and recommends redacting each span."""

from __future__ import annotations

import time

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Stage, Verdict
from fmops.guardrails.registry import build
from fmops.pii import detect

IN = Context(Stage.input)
OUT = Context(Stage.output)


def test_clean_text_is_allowed() -> None:
    decision = build("pii", {}).check("Order #123-456-7890 shipped on 2024-05-01, version 1.2.3.4", IN)
    assert decision.verdict is Verdict.allow


def test_each_finding_is_a_span_and_the_reason_counts_without_quoting() -> None:
    text = "Write to ada@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111."
    decision = build("pii", {}).check(text, OUT)
    assert decision.verdict is Verdict.redact
    found = {(text[s.start : s.end], s.type) for s in decision.spans}
    assert found == {
        ("ada@example.com", "email"),
        ("+44 20 7946 0958", "phone"),
        ("4111 1111 1111 1111", "credit_card"),
    }
    assert decision.reason == "personal data found: 1 credit_card, 1 email, 1 phone"
    for span in decision.spans:
        assert text[span.start : span.end] not in decision.reason
    assert decision.data == {"types": ["credit_card", "email", "phone"]}


def test_the_same_detector_as_curation() -> None:
    text = "IBAN GB82 WEST 1234 5698 7654 32, host 192.168.10.20, mail bob@example.org"
    spans = build("pii", {}).check(text, IN).spans
    assert [(s.start, s.end, s.type) for s in spans] == [(f.start, f.end, f.type.value) for f in detect(text)]


def test_types_narrow_what_counts() -> None:
    guard = build("pii", {"types": ["email"]})
    assert guard.check("call +44 20 7946 0958", IN).allowed
    assert not guard.check("mail ada@example.com", IN).allowed


def test_secrets_are_left_to_the_secrets_guardrail_by_default() -> None:
    assert build("pii", {}).check("key AKIAIOSFODNN7EXAMPLE", IN).allowed
    assert not build("pii", {"types": ["secret"]}).check("key AKIAIOSFODNN7EXAMPLE", IN).allowed


def test_unknown_types_are_a_400_naming_the_field() -> None:
    with pytest.raises(UserError) as caught:
        build("pii", {"types": ["email", "shoe_size"], "action": "redact"})
    assert "config.types: unknown PII type(s) shoe_size" in caught.value.message
    assert "config.action: Extra inputs are not permitted" in caught.value.message


def test_a_megabyte_finishes_in_bounded_time() -> None:
    text = ("Reach me at ada@example.com, or +1 415 555 0132. Order 12345678. " * 16_000)[:1_000_000]
    started = time.perf_counter()
    decision = build("pii", {}).check(text, IN)
    assert time.perf_counter() - started < 20
    assert decision.verdict is Verdict.redact
    assert len(decision.spans) > 10_000
