"""`secrets` finds credentials: vendor prefixes, assigned passwords, private keys, random tokens."""

from __future__ import annotations

import time

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Stage, Verdict
from fmops.guardrails.registry import build

IN = Context(Stage.input)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9\nZ3x+Qk1==\n-----END RSA PRIVATE KEY-----"
)
RANDOM = "Zx8Qp2Lm9Rt4Vb7Nc1Kd6Hf3Jg5Ws0Ya"


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "github_token"),
        ("sk-proj-" + "Ab3dEf6hIj9lMn2pQr5tUv8x", "api_key"),
        (PRIVATE_KEY, "private_key"),
        (RANDOM, "high_entropy"),
    ],
)
def test_each_kind_is_a_span_and_the_reason_names_the_kind_only(secret: str, kind: str) -> None:
    text = f"here it is: {secret} - keep it safe"
    decision = build("secrets", {}).check(text, IN)
    assert decision.verdict is Verdict.redact
    assert [(text[s.start : s.end], s.type) for s in decision.spans] == [(secret, "secret")]
    assert decision.reason == f"secret found: 1 {kind}"
    assert secret not in decision.reason
    assert secret not in str(decision.data)


def test_an_assigned_password_is_the_value_only() -> None:
    text = 'config: password = "hunter2!x"'
    (span,) = build("secrets", {}).check(text, IN).spans
    assert text[span.start : span.end] == "hunter2!x"


def test_high_entropy_tokens_can_be_left_out() -> None:
    assert build("secrets", {"high_entropy": False}).check(f"sha {RANDOM}", IN).allowed
    assert not build("secrets", {"high_entropy": False}).check("AKIAIOSFODNN7EXAMPLE", IN).allowed


def test_ordinary_text_is_allowed() -> None:
    text = "The deploy finished at 10:42; see https://example.com/docs/release-notes for v2.3.1."
    assert build("secrets", {}).check(text, IN).allowed


def test_config_errors_name_the_field() -> None:
    with pytest.raises(UserError, match=r"config\.high_entropy: "):
        build("secrets", {"high_entropy": "perhaps"})


def test_a_megabyte_finishes_in_bounded_time() -> None:
    text = ("token AKIAIOSFODNN7EXAMPLE in a line of ordinary words and numbers 12345. " * 14_000)[:1_000_000]
    started = time.perf_counter()
    decision = build("secrets", {}).check(text, IN)
    assert time.perf_counter() - started < 20
    assert len(decision.spans) > 10_000
