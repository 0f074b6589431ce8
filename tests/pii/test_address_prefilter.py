"""The address scan's pre-filter (`_may_hold_address`) skips p.ADDRESS only where it cannot match: on
random texts made of street words, numbers and every kind of white space, the findings equal the
pattern's own."""

from __future__ import annotations

import random

import pytest

from fmops.pii import patterns as p
from fmops.pii.detector import _addresses, _may_hold_address

PIECES = [
    "12", "4", "221B", "Main", "Baker", "St", "St.", "Street", "Streets", "Ave", "Road", "Way", "Close",
    "Hwy", "N.", "North", "Apt 4", "Springfield,", "IL 62704", "SW1A 1AA", "Hauptstrasse", "Bahnhofstr.",
    "Lindenweg", "Marktplatz", "during", "Ring", "bring", "damm", "rue", "de", "la", "Rivoli", "bis",
    "place", "true", "quai", "Voltaire", "75001", "Paris", "ok", ",", "and",
]  # fmt: skip
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\v", "\f", "\x1c", "", ","]


@pytest.mark.parametrize(
    "text",
    ["12 Main St", "221B Baker Street, London", "Hauptstrasse 5", "Bahnhofstr.\t12", "12 rue de Rivoli",
     "4 bis, quai Voltaire", "Hauptstraße 5", "12 allée des Roses"],
)  # fmt: skip
def test_addresses_pass(text: str) -> None:
    assert _may_hold_address(text)
    assert list(_addresses(text))


@pytest.mark.parametrize(
    "text", ["during the 5 days", "a string of 12 times", "It is true, 12 places", "Still 4 Streets away"]
)
def test_prose_is_skipped(text: str) -> None:
    assert not _may_hold_address(text)
    assert not list(p.ADDRESS.finditer(text))


def test_same_findings_as_the_pattern() -> None:
    rng = random.Random(11)
    matched = 0
    for _ in range(4000):
        words = rng.choices(PIECES, k=rng.randint(1, 9))
        text = "".join(w + rng.choice(SPACES) for w in words)
        expected = [(m.start(), m.end()) for m in p.ADDRESS.finditer(text)]
        assert [(f.start, f.end) for f in _addresses(text)] == expected, repr(text)
        matched += bool(expected)
    assert matched > 100  # the texts do hold addresses
