"""Helpers shared by the scorers that compare an output with the expected one: the references a case
gives, text normalisation, and the config fields that choose it."""

from __future__ import annotations

import unicodedata
from typing import Any

import regex
from pydantic import Field

from fmops.scorers.base import Case, ScorerConfig, ScoreResult, text_of

NO_EXPECTED = "no_expected"
_SPACES = regex.compile(r"\s+")
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")
# Words for ROUGE: runs of letters and digits in any script (rouge-score keeps only [a-z0-9], so
# text in other scripts scores nothing there); the underscore splits, as it does in rouge-score.
_WORDS = regex.compile(r"[^\W_]+")


def references(expected: Any) -> list[str]:
    """The acceptable answers a case's `expected` gives: a list of strings is a set of alternatives;
    any other value is one answer, read as its text (a message's content, a JSON value's text)."""
    if isinstance(expected, list | tuple) and expected and all(isinstance(e, str) for e in expected):
        return list(expected)
    return [text_of(expected)]


def missing_expected(case: Case) -> ScoreResult | None:
    """An undecided result when the case has no expected output (a suite problem, not a wrong answer)."""
    if case.expected is None:
        return ScoreResult.undecided(
            NO_EXPECTED, "this case has no expected output to compare with; give the case an `expected`"
        )
    return None


class NormalizeConfig(ScorerConfig):
    """How texts are normalised before they are compared."""

    ignore_case: bool = Field(False, description="Compare case-insensitively (Unicode casefold)")
    normalize_whitespace: bool = Field(
        True, description="Strip the ends and collapse every run of whitespace into one space"
    )
    ignore_punctuation: bool = Field(False, description="Drop punctuation and symbols (any script)")
    normalize_unicode: bool = Field(True, description="Unicode NFKC first (full-width forms, ligatures)")


def normalize(text: str, cfg: NormalizeConfig) -> str:
    if cfg.normalize_unicode:
        text = unicodedata.normalize("NFKC", text)
    if cfg.ignore_case:
        text = text.casefold()
    if cfg.ignore_punctuation:
        text = _PUNCTUATION.sub("", text)  # as SQuAD's normaliser does: "U.S.A." -> "USA"
    if cfg.normalize_whitespace:
        text = _SPACES.sub(" ", text).strip()
    return text


def words(text: str) -> list[str]:
    """Casefolded words, for token-overlap metrics."""
    return _WORDS.findall(text.casefold())
