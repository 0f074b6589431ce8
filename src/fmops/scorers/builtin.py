"""The cheap built-in scorers: no model call, microseconds per case, run right after the response.

Each gives 1.0 (pass) or 0.0 (fail) with the label "pass"/"fail" and, on a failure, a comment
saying what was wrong. They score `case.output_text`, the text of the assistant's message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import Field, field_validator, model_validator

from fmops.scorers import json_schema
from fmops.scorers.base import Case, Scorer, ScorerConfig, ScoreResult
from fmops.scorers.safe_regex import PatternTimeout, check_pattern, search

FENCE = "```"


def _unfence(text: str) -> str:
    """The body of a ```json ... ``` block around the whole answer, as chat models like to write it."""
    stripped = text.strip()
    if len(stripped) < 2 * len(FENCE) or not (stripped.startswith(FENCE) and stripped.endswith(FENCE)):
        return text
    first_line, _, body = stripped[: -len(FENCE)].partition("\n")
    language = first_line[len(FENCE) :].strip()
    return body if language == "" or language.isidentifier() else text


def parse_json(text: str, allow_code_fence: bool) -> tuple[Any, str | None]:
    """(value, None) when the text is JSON; (None, why not) otherwise."""
    if allow_code_fence:
        text = _unfence(text)
    if not text.strip():
        return None, "the output is empty"
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"


class JsonConfig(ScorerConfig):
    allow_code_fence: bool = Field(
        False, description="Accept JSON wrapped in a Markdown code fence (```json ... ```)"
    )


class JsonValid(Scorer[JsonConfig]):
    """1.0 ("pass") when the output parses as JSON, else 0.0 ("fail", with the parse error)."""

    name: ClassVar[str] = "json"
    description: ClassVar[str] = "Passes when the output parses as JSON"
    config_model: ClassVar[type[ScorerConfig]] = JsonConfig

    def score(self, case: Case) -> ScoreResult:
        _, problem = parse_json(case.output_text, self.config.allow_code_fence)
        return ScoreResult.passed(problem is None, problem)


class JsonSchemaConfig(ScorerConfig):
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema the output must satisfy")
    allow_code_fence: bool = Field(
        False, description="Accept JSON wrapped in a Markdown code fence (```json ... ```)"
    )
    check_formats: bool = Field(False, description="Also check `format` (email, date-time, uri, ...)")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        json_schema.check(value)
        return value


class JsonSchemaValid(Scorer[JsonSchemaConfig]):
    """1.0 ("pass") when the output is JSON satisfying the schema, else 0.0 ("fail", with up to five
    problems and where they are); undecided ("timeout", "error") when the schema cannot be applied."""

    name: ClassVar[str] = "json_schema"
    description: ClassVar[str] = "Passes when the output is JSON that satisfies a JSON Schema"
    config_model: ClassVar[type[ScorerConfig]] = JsonSchemaConfig

    def __init__(self, config: JsonSchemaConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._validator = json_schema.validator(config.schema_, check_formats=config.check_formats)

    def score(self, case: Case) -> ScoreResult:
        value, problem = parse_json(case.output_text, self.config.allow_code_fence)
        if problem is not None:
            return ScoreResult.passed(False, problem)
        try:
            errors = json_schema.errors(self._validator, value)
        except PatternTimeout as exc:
            return ScoreResult.undecided("timeout", f"a pattern in the schema is too slow: {exc}")
        except json_schema.Unresolvable as exc:
            return ScoreResult.undecided("error", f"the schema cannot be used: {exc}")
        return ScoreResult.passed(not errors, "; ".join(errors) or None)


class RegexConfig(ScorerConfig):
    pattern: str = Field(min_length=1, description="A Python regular expression")
    full_match: bool = Field(False, description="The whole output must match, not just a part of it")
    ignore_case: bool = False
    multiline: bool = Field(False, description="^ and $ match at each line")
    dotall: bool = Field(False, description=". matches newlines too")
    expect: Literal["match", "no_match"] = Field(
        "match", description="no_match: pass when the pattern is absent (e.g. a refusal phrase)"
    )

    @property
    def flags(self) -> int:
        return (
            (re.IGNORECASE if self.ignore_case else 0)
            | (re.MULTILINE if self.multiline else 0)
            | (re.DOTALL if self.dotall else 0)
        )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return check_pattern(value)


class RegexMatch(Scorer[RegexConfig]):
    """1.0 ("pass") when the pattern matches (or, with expect no_match, does not), else 0.0 ("fail");
    undecided ("timeout") when the pattern runs past its time limit (see safe_regex)."""

    name: ClassVar[str] = "regex"
    description: ClassVar[str] = (
        "Passes when a regular expression matches the output (or, if asked, does not)"
    )
    config_model: ClassVar[type[ScorerConfig]] = RegexConfig

    def score(self, case: Case) -> ScoreResult:
        cfg = self.config
        try:
            matched = search(cfg.pattern, case.output_text, cfg.flags, full=cfg.full_match)
        except PatternTimeout as exc:
            return ScoreResult.undecided("timeout", str(exc))
        ok = matched == (cfg.expect == "match")
        if ok:
            return ScoreResult.passed(True)
        how = "does not match" if cfg.expect == "match" else "matches"
        return ScoreResult.passed(False, f"the output {how} {cfg.pattern!r}")


NonNegative = Annotated[int, Field(ge=0, le=10_000_000)]


class LengthConfig(ScorerConfig):
    min: NonNegative | None = Field(None, description="At least this many")
    max: NonNegative | None = Field(None, description="At most this many")
    unit: Literal["characters", "words"] = "characters"

    @model_validator(mode="after")
    def _bounds(self) -> LengthConfig:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Length(Scorer[LengthConfig]):
    """1.0 ("pass") when the length in characters or words is within min..max, else 0.0 ("fail");
    the comment gives the count."""

    name: ClassVar[str] = "length"
    description: ClassVar[str] = "Passes when the output's length in characters or words is within bounds"
    config_model: ClassVar[type[ScorerConfig]] = LengthConfig

    def score(self, case: Case) -> ScoreResult:
        cfg = self.config
        text = case.output_text
        count = len(text.split()) if cfg.unit == "words" else len(text)
        if cfg.min is not None and count < cfg.min:
            return ScoreResult.passed(False, f"{count} {cfg.unit}, fewer than the minimum of {cfg.min}")
        if cfg.max is not None and count > cfg.max:
            return ScoreResult.passed(False, f"{count} {cfg.unit}, more than the maximum of {cfg.max}")
        return ScoreResult.passed(True, f"{count} {cfg.unit}")


Strings = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=1000)]],
    Field(min_length=1, max_length=200, description="Text to look for"),
]


class StringsConfig(ScorerConfig):
    strings: Strings
    case_sensitive: bool = False


class ContainsConfig(StringsConfig):
    mode: Literal["any", "all", "none"] = Field(
        "any", description="Pass when any, all or none of the strings appear"
    )


def _contains(strings: list[str], mode: str, case_sensitive: bool, output: str) -> ScoreResult:
    text = output if case_sensitive else output.casefold()
    found = [s for s in strings if (s if case_sensitive else s.casefold()) in text]
    missing = [s for s in strings if s not in found]
    if mode == "any":
        return ScoreResult.passed(bool(found), None if found else f"none of {strings!r} found")
    if mode == "all":
        return ScoreResult.passed(not missing, f"missing {missing!r}" if missing else None)
    return ScoreResult.passed(not found, f"found {found!r}" if found else None)


class Contains(Scorer[ContainsConfig]):
    """1.0 ("pass") when the output contains any (the default), all or none of `strings`, else 0.0
    ("fail") with the strings found or missing as the comment."""

    name: ClassVar[str] = "contains"
    description: ClassVar[str] = "Passes when the output contains any, all or none of some strings"
    config_model: ClassVar[type[ScorerConfig]] = ContainsConfig

    def score(self, case: Case) -> ScoreResult:
        cfg = self.config
        return _contains(cfg.strings, cfg.mode, cfg.case_sensitive, case.output_text)


class AnyOf(Scorer[StringsConfig]):
    """1.0 ("pass") when at least one of `strings` is in the output, else 0.0 ("fail"):
    `contains` with mode "any", under the name suites use."""

    name: ClassVar[str] = "any_of"
    description: ClassVar[str] = "Passes when the output contains at least one of some strings"
    config_model: ClassVar[type[ScorerConfig]] = StringsConfig

    def score(self, case: Case) -> ScoreResult:
        return _contains(self.config.strings, "any", self.config.case_sensitive, case.output_text)


class AllOf(Scorer[StringsConfig]):
    """1.0 ("pass") when every one of `strings` is in the output, else 0.0 ("fail", naming the missing
    ones): `contains` with mode "all"."""

    name: ClassVar[str] = "all_of"
    description: ClassVar[str] = "Passes when the output contains every one of some strings"
    config_model: ClassVar[type[ScorerConfig]] = StringsConfig

    def score(self, case: Case) -> ScoreResult:
        return _contains(self.config.strings, "all", self.config.case_sensitive, case.output_text)
