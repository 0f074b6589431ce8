"""Scorers that compare the output with the case's expected output: exact match, numeric tolerance
and field-level match of structured (JSON) output. Offline evaluation only (`needs_expected`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import orjson
import regex
from pydantic import Field, field_validator

from fmops.scorers.base import (
    FAIL,
    PASS,
    Aggregate,
    Case,
    Scorer,
    ScorerConfig,
    ScoreResult,
    mean_aggregate,
    text_of,
)
from fmops.scorers.builtin import parse_json
from fmops.scorers.text import NormalizeConfig, missing_expected, normalize, references

# --- exact match ---------------------------------------------------------------------------------


class ExactMatchConfig(NormalizeConfig):
    """Only the normalisation options."""


class ExactMatch(Scorer[ExactMatchConfig]):
    """1.0 ("pass") when the normalised output equals the normalised expected output (or any one of
    them, when `expected` is a list of strings), else 0.0 ("fail", quoting both).

    Normalisation (config): NFKC, whitespace collapsed and stripped (on by default), case and
    punctuation ignored (off by default). An expected JSON object (or a list that is not all
    strings) is compared as data: the output must parse as JSON (a code fence allowed) and be equal."""

    name: ClassVar[str] = "exact_match"
    description: ClassVar[str] = "Passes when the output equals the expected output, after normalisation"
    config_model: ClassVar[type[ScorerConfig]] = ExactMatchConfig
    needs_expected: ClassVar[bool] = True

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        expected = case.expected
        if isinstance(expected, dict) or (
            isinstance(expected, list) and not all(isinstance(e, str) for e in expected)
        ):
            value, problem = parse_json(case.output_text, True)
            if problem is not None:
                return ScoreResult.passed(False, problem)
            return ScoreResult.passed(
                value == expected, None if value == expected else f"expected {_short(expected)}"
            )
        output = normalize(case.output_text, self.config)
        wanted = [normalize(r, self.config) for r in references(case.expected)]
        if output in wanted:
            return ScoreResult.passed(True)
        shown = wanted[0] if len(wanted) == 1 else wanted
        return ScoreResult.passed(False, f"expected {shown!r}, got {output[:300]!r}")


# --- numeric tolerance ---------------------------------------------------------------------------

# A decimal number, with optional thousands separators ("1,234.5") and exponent.
_NUMBER = regex.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")


def parse_number(text: str) -> float | None:
    """The number a string is (thousands separators and a Unicode minus allowed), or None."""
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        return None
    return _to_float(stripped)


def _to_float(token: str) -> float | None:
    try:
        value = float(token.replace(",", "").replace("−", "-"))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number_of(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return parse_number(text_of(value)) if value is not None else None


class NumericConfig(ScorerConfig):
    abs_tol: float = Field(0.0, ge=0, description="Pass when |output - expected| <= abs_tol ...")
    rel_tol: float = Field(0.0, ge=0, description="... or <= rel_tol x max(|output|, |expected|)")
    extract: Literal["whole", "first", "last"] = Field(
        "last",
        description="whole: the output must be a number; first/last: the first/last number in the text",
    )


class NumericTolerance(Scorer[NumericConfig]):
    """1.0 ("pass") when the number in the output is within tolerance of the expected number
    (math.isclose: |a - b| <= max(rel_tol x max(|a|, |b|), abs_tol); both 0 means equal), else 0.0
    ("fail", with the difference). No number in the output is a fail; an expected value that is not a
    number cannot be scored ("error")."""

    name: ClassVar[str] = "numeric"
    description: ClassVar[str] = "Passes when the output's number is within an absolute or relative tolerance"
    config_model: ClassVar[type[ScorerConfig]] = NumericConfig
    needs_expected: ClassVar[bool] = True

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        expected = _number_of(case.expected)
        if expected is None:
            return ScoreResult.undecided("error", f"the expected value {case.expected!r} is not a number")
        got = self._extract(case.output_text)
        if got is None:
            how = "is not a number" if self.config.extract == "whole" else "has no number"
            return ScoreResult.passed(False, f"the output {how}: {case.output_text[:200]!r}")
        cfg = self.config
        ok = math.isclose(got, expected, rel_tol=cfg.rel_tol, abs_tol=cfg.abs_tol)
        data = {"output": got, "expected": expected, "difference": got - expected}
        comment = None if ok else f"{got:g} differs from {expected:g} by {abs(got - expected):g}"
        return ScoreResult(1.0 if ok else 0.0, PASS if ok else FAIL, comment, data)

    def _extract(self, text: str) -> float | None:
        if self.config.extract == "whole":
            return parse_number(text)
        found = _NUMBER.findall(text)
        if not found:
            return None
        return _to_float(found[0] if self.config.extract == "first" else found[-1])


# --- field-level match of structured output ------------------------------------------------------

_MISSING = object()


class FieldMatchConfig(NormalizeConfig):
    fields: list[str] | None = Field(
        None,
        max_length=500,
        description="Dotted paths to compare (e.g. customer.name, items.0.sku); default: every top-level "
        "key of the expected object",
    )
    abs_tol: float = Field(0.0, ge=0, description="Numbers within this of each other are equal")
    allow_code_fence: bool = Field(
        True, description="Accept output JSON wrapped in a Markdown code fence (```json ... ```)"
    )

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one field, or leave `fields` out to compare every key")
            for path in value:
                if not path or any(not part for part in path.split(".")):
                    raise ValueError(f"{path!r} is not a dotted path like `a.b.0`")
        return value


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


class FieldMatch(Scorer[FieldMatchConfig]):
    """Compares JSON fields of the output with the expected object's, one by one.

    The value is the fraction of fields that match (1.0 = all); the label is "pass" when all do,
    "fail" otherwise, with the mismatches as the comment; `data.fields` holds each field's 1.0/0.0.
    Strings compare after the normalisation options, numbers within `abs_tol`, objects and lists
    field by field recursively. Output that is not a JSON object scores 0.0 on every field. The
    run's aggregate reports each field's match rate as `field.<path>` beside the overall mean."""

    name: ClassVar[str] = "field_match"
    description: ClassVar[str] = "Per-field match of the output's JSON with the expected object"
    config_model: ClassVar[type[ScorerConfig]] = FieldMatchConfig
    needs_expected: ClassVar[bool] = True
    aggregates: ClassVar[bool] = True  # the run's summary carries each field's rate (`field.<path>`)

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        expected = case.expected
        if isinstance(expected, str):
            expected, problem = parse_json(expected, True)
            if problem is not None:
                return ScoreResult.undecided("error", f"the expected output is not JSON: {problem}")
        if not isinstance(expected, dict):
            return ScoreResult.undecided("error", "the expected output must be a JSON object")
        paths = self.config.fields or list(expected)
        if not paths:
            return ScoreResult.undecided("error", "the expected object has no fields to compare")
        output, problem = parse_json(case.output_text, self.config.allow_code_fence)
        if problem is None and not isinstance(output, dict):
            problem = "the output is JSON but not an object"
        scores: dict[str, float] = {}
        wrong: list[str] = []
        for path in paths:
            want, got = _at(expected, path), _MISSING if problem else _at(output, path)
            ok = got is not _MISSING and want is not _MISSING and self._equal(got, want)
            scores[path] = 1.0 if ok else 0.0
            if not ok and not problem:
                shown = "missing" if got is _MISSING else _short(got)
                wrong.append(f"{path}: expected {_short(want)}, got {shown}")
        value = math.fsum(scores.values()) / len(scores)
        comment = problem or ("; ".join(wrong[:10]) or None)
        return ScoreResult(value, PASS if value == 1.0 else FAIL, comment, {"fields": scores})

    def _equal(self, got: Any, want: Any) -> bool:
        if isinstance(want, bool) or isinstance(got, bool):
            return got is want
        if isinstance(want, int | float) and isinstance(got, int | float):
            return math.isclose(got, want, rel_tol=0.0, abs_tol=self.config.abs_tol)
        if isinstance(want, str) and isinstance(got, str):
            return normalize(got, self.config) == normalize(want, self.config)
        if isinstance(want, dict) and isinstance(got, dict):
            return want.keys() == got.keys() and all(self._equal(got[k], want[k]) for k in want)
        if isinstance(want, list) and isinstance(got, list):
            return len(want) == len(got) and all(self._equal(g, w) for g, w in zip(got, want, strict=True))
        return bool(got == want)

    def aggregate(self, results: Sequence[ScoreResult]) -> Aggregate:
        overall = mean_aggregate(results)
        per_field: dict[str, list[float]] = {}
        for result in results:
            if result.value is not None and result.data:
                for path, score in result.data.get("fields", {}).items():
                    per_field.setdefault(path, []).append(score)
        metrics = dict(overall.metrics)
        metrics.update({f"field.{p}": math.fsum(v) / len(v) for p, v in per_field.items()})
        return Aggregate(overall.value, metrics, {}, overall.count, overall.undecided)


def _short(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 80 else text[:80] + "…"
