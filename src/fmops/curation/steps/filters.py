"""`filter: {...}`: drop records by length, repetition, non-text share, refusals, empty answers and
language. Every threshold is off unless given; each removal is counted under its reason.

- `min_chars` / `max_chars`: length of the record's text (every turn joined).
- `max_repetition`: the share of the text's word 3-grams that repeat an earlier one (0 none, ~1 a loop).
- `max_non_text_ratio`: the share of non-blank characters that are not letters (digits, symbols).
- `drop_refusals`: the answer is a refusal ("I'm sorry, but I can't...", "As an AI language model...").
- `drop_empty_answers`: the record has no answer, or a blank one.
- `language`: keep only records whose text is in one of these ISO 639-1 languages (py3langid, offline),
  with at least `min_language_score` probability.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, ClassVar

import regex
from pydantic import Field, field_validator, model_validator

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, counted
from fmops.curation.fields import answer
from fmops.curation.shingles import words

REFUSAL = regex.compile(
    r"""(?i)^\W*(?:
        (?:i'?m|i\ am)\ (?:so\ |very\ |really\ )?sorry,?\ (?:but\ )?
        i\ (?:can(?:not|'t|\ not)|won'?t|am\ unable|'m\ unable|am\ not\ able)
      | i\ (?:can(?:not|'t|\ not)|won'?t|am\ unable\ to|'m\ unable\ to|am\ not\ able\ to|'m\ not\ able\ to)
        \ (?:help|assist|comply|provide|do\ that|answer|fulfil|fulfill|support|create|generate|share)
      | as\ an\ ai(?:\ language\ model|\ model|\ assistant)?\b
      | (?:unfortunately|sorry),?\ i\ (?:can(?:not|'t)|am\ unable|'m\ unable)
    )""",
    regex.VERSION1 | regex.VERBOSE,
)


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    from py3langid.langid import (  # type: ignore[import-untyped]  # 1.5 s to load: only when asked
        MODEL_FILE,
        LanguageIdentifier,
    )

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _known_languages() -> set[str]:
    return set(_language_identifier().nb_classes)


class FilterOptions(StepOptions):
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    max_repetition: float | None = Field(None, ge=0, le=1)
    max_non_text_ratio: float | None = Field(None, ge=0, le=1)
    drop_refusals: bool = False
    drop_empty_answers: bool = False
    language: list[str] | None = Field(
        None, min_length=1, max_length=200, description="ISO 639-1 codes to keep"
    )
    min_language_score: float = Field(0.5, ge=0, le=1)

    @field_validator("language")
    @classmethod
    def _languages(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - _known_languages())
            if unknown:
                raise ValueError(
                    f"unknown language code(s) {', '.join(unknown)} (use ISO 639-1, e.g. en, de)"
                )
        return value

    @model_validator(mode="after")
    def _bounds(self) -> FilterOptions:
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise ValueError("min_chars is greater than max_chars")
        return self


def repetition(text: str) -> float:
    w = words(text)
    if len(w) < 6:
        return 0.0
    grams = list(zip(w, w[1:], w[2:], strict=False))
    return 1 - len(set(grams)) / len(grams)


def non_text_ratio(text: str) -> float:
    visible = sum(1 for ch in text if not ch.isspace())
    if visible == 0:
        return 0.0
    return 1 - sum(1 for ch in text if ch.isalpha()) / visible


class QualityFilter(Step[FilterOptions]):
    name = "filter"
    Options = FilterOptions
    description: ClassVar[str] = (
        "Drop records by length, repetition, non-text share, refusals, empty answers, language"
    )
    per_batch = True

    def reason(self, ctx: StepContext, record: dict[str, Any]) -> str | None:
        o = self.options
        text = ctx.text(record)
        if o.min_chars is not None and len(text) < o.min_chars:
            return "too_short"
        if o.max_chars is not None and len(text) > o.max_chars:
            return "too_long"
        if o.drop_empty_answers or o.drop_refusals:
            said = answer(ctx.kind, record)
            if o.drop_empty_answers and (said is None or not said.strip()):
                return "empty_answer"
            if o.drop_refusals and said and REFUSAL.search(said[:300]):
                return "refusal"
        if o.max_repetition is not None and repetition(text) > o.max_repetition:
            return "repetitive"
        if o.max_non_text_ratio is not None and non_text_ratio(text) > o.max_non_text_ratio:
            return "non_text"
        if o.language is not None:
            language, score = _language_identifier().classify(text[:2000])
            if language not in o.language or score < o.min_language_score:
                return "language"
        return None

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        for batch in counted(source, ctx, report):
            kept: Batch = []
            for record in batch:
                why = self.reason(ctx, record)
                if why is None:
                    kept.append(record)
                else:
                    report.remove(why, ctx.text(record))
            report.records_out += len(kept)
            yield kept
