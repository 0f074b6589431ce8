"""The detector's pre-filters skip a pattern's scan only where it cannot match: findings are the same as
with every scan run. Non-ASCII text turns the digit-shape filters off (and the token scan back to the
pattern's own), so the same text with a non-ASCII word appended must give the same findings."""

from __future__ import annotations

import itertools
import random

import pytest

from fmops.pii import PiiType, detect


def found(text: str) -> list[tuple[str, str, str]]:
    return [(f.type.value, text[f.start : f.end], f.detail) for f in detect(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The shortest vendor key (xox?- and ten characters) and a 32-character token, just long enough.
        ("xoxb-1234567890 here", [("secret", "xoxb-1234567890", "slack_token")]),
        (
            "key A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6 end",
            [("secret", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "high_entropy")],
        ),
        ("A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p", []),  # 31: too short
        ("x=A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6==", []),  # after "=": part of something else
        (
            "aA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6.b",
            [("secret", "aA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "high_entropy")],
        ),
        (
            "é A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6",
            [("secret", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "high_entropy")],
        ),
        # The assignment pattern folds case fully: the word filter must too.
        ("PaßWD = hunter2!!", [("secret", "hunter2!!", "assigned")]),
        ("ſecret: abcdefgh12", [("secret", "abcdefgh12", "assigned")]),
        ("AUTH-TOKEN: 'zz9Yq3!xx'", [("secret", "zz9Yq3!xx", "assigned")]),
        # No ":" or "=": the key must come before "is" (found in the lower-case text reversed).
        ("my API_KEY is hunter2!!x", [("secret", "hunter2!!x", "assigned")]),
        ("password  IS   s3cr3t-pass", [("secret", "s3cr3t-pass", "assigned")]),
        # Digit groups joined by the separators each pattern allows, at the filters' edges.
        ("call +1 (555) 123-4567 now", [("phone", "+1 (555) 123-4567", "")]),
        ("call (555) 123-4567 now", [("phone", "(555) 123-4567", "")]),
        ("call 07700 900123 now", [("phone", "07700 900123", "")]),
        ("card 5500-0000-0000-0004 ok", [("credit_card", "5500-0000-0000-0004", "")]),
        ("SSN 536 90 4399", [("national_id", "536 90 4399", "us_ssn")]),
    ],
)
def test_filter_edges(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert found(text) == expected


def _pieces() -> list[str]:
    return [
        "SSN ", "BSN: ", "Aadhaar no. ", "order #", "call ", "IBAN ", "DE89 3704 0044 0532 0130 00", "+44 ",
        "(555) ", "4111 1111 1111 1111", "X-", "fe80::1ff:fe23:4567:890a", "key=", "Password: ", "sk-",
        "AKIA", "ghp_", "eyJ", "token ", "12 Main Street", "Hauptstraße 5", "ada@example.com", "10.0.0.1",
        "AB 12 34 56 C", "QQ123456C", "GB82 WEST 1234 5698 7654 32", "4 bis, rue de Rivoli", "Lindenweg\t7",
    ]  # fmt: skip


def test_same_findings_with_filters_off() -> None:
    rng = random.Random(5)
    alphabet = "0123456789" * 4 + " .-()+:=/_" * 2 + "aAxX#\n@"
    pieces = _pieces()
    checked = 0
    for _ in range(3000):
        parts = [
            rng.choice(pieces) if rng.random() < 0.3 else "".join(rng.choices(alphabet, k=rng.randint(1, 40)))
            for _ in range(rng.randint(1, 8))
        ]
        text = "".join(parts)
        unfiltered = text + " é"  # non-ASCII: the digit-shape filters and the token short-cut step aside
        a = [(f.type, f.start, f.end, f.detail) for f in detect(text)]
        b = [(f.type, f.start, f.end, f.detail) for f in detect(unfiltered) if f.end <= len(text)]
        assert a == b, text
        checked += len(a)
    assert checked > 300  # the texts do hold findings


@pytest.mark.parametrize("kind", list(PiiType))
def test_one_type_at_a_time_agrees(kind: PiiType) -> None:
    text = " ".join(itertools.chain(_pieces(), ["A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"]))
    alone = detect(text, (kind,))
    assert alone == [f for f in detect(text + " é", (kind,)) if f.end <= len(text)]
