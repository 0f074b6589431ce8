"""Scorers that compare with the expected output: exact match, any-of/all-of, numeric, field match."""

from __future__ import annotations

from typing import Any

import pytest

from fmops.errors import UserError
from fmops.scorers import Case, ScoreResult, build


def case(content: Any, expected: Any) -> Case:
    return Case.of(
        {"messages": [{"role": "user", "content": "question"}]},
        {"role": "assistant", "content": content},
        expected=expected,
    )


def run(scorer: str, config: dict[str, Any], content: Any, expected: Any = None) -> ScoreResult:
    return build(scorer, config).score(case(content, expected))


def config_error(scorer: str, config: dict[str, Any]) -> UserError:
    with pytest.raises(UserError) as caught:
        build(scorer, config)
    assert caught.value.status_code == 400
    return caught.value


# --- exact_match ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "config", "ok"),
    [
        ("Paris", "Paris", {}, True),
        ("  Paris \n", "Paris", {}, True),  # whitespace is normalised by default
        ("New   York", "New York", {}, True),
        ("  Paris \n", "Paris", {"normalize_whitespace": False}, False),
        ("paris", "Paris", {}, False),
        ("paris", "Paris", {"ignore_case": True}, True),
        ("Paris.", "Paris", {}, False),
        ("Paris.", "Paris", {"ignore_punctuation": True}, True),
        ("U.S.A.", "USA", {"ignore_punctuation": True}, True),
        ("«Straße»", "STRASSE", {"ignore_case": True, "ignore_punctuation": True}, True),  # casefold ß
        ("ＡＢＣ１２", "ABC12", {}, True),  # full-width forms under NFKC
        ("ＡＢＣ１２", "ABC12", {"normalize_unicode": False}, False),
        ("東京", "東京", {}, True),
        ("Lyon", ["Paris", "Lyon"], {}, True),  # a list of strings: any is accepted
        ("Nice", ["Paris", "Lyon"], {}, False),
        ("", "Paris", {}, False),
        (None, "Paris", {}, False),  # a tool-call answer has no content
        ("", "", {}, True),
        ('```json\n{"a": [1, {"b": null}]}\n```', {"a": [1, {"b": None}]}, {}, True),  # JSON as data
        ('{"a": 2}', {"a": 1}, {}, False),
        ("not json", [1, 2], {}, False),
    ],
)
def test_exact_match(output: Any, expected: Any, config: dict[str, Any], ok: bool) -> None:
    result = run("exact_match", config, output, expected)
    assert (result.value, result.label) == ((1.0, "pass") if ok else (0.0, "fail"))
    assert (result.comment is None) == ok


def test_exact_match_without_expected_is_undecided_not_wrong() -> None:
    result = run("exact_match", {}, "Paris", None)
    assert (result.value, result.label) == (None, "no_expected")
    assert "expected" in (result.comment or "")


def test_exact_match_config_is_checked() -> None:
    error = config_error("exact_match", {"ignore_case": "sometimes"})
    assert error.param == "config.ignore_case"
    assert "config.ignore_case" in error.message
    assert config_error("exact_match", {"case": True}).param == "config.case"  # a typo is refused


# --- any_of / all_of -----------------------------------------------------------------------------


def test_any_of_and_all_of() -> None:
    assert run("any_of", {"strings": ["refund", "money back"]}, "You get your MONEY BACK").value == 1.0
    assert run("any_of", {"strings": ["refund"], "case_sensitive": True}, "REFUND").value == 0.0
    missing = run("all_of", {"strings": ["café", "thé"]}, "Un café, merci")
    assert (missing.value, missing.comment) == (0.0, "missing ['thé']")
    assert run("all_of", {"strings": ["café", "thé"]}, "Café et thé").value == 1.0
    assert run("any_of", {"strings": ["x"]}, "").value == 0.0
    assert config_error("any_of", {"strings": []}).param == "config.strings"
    assert config_error("all_of", {"strings": ["a"], "mode": "none"}).param == "config.mode"


# --- numeric -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected", "config", "ok"),
    [
        ("42", 42, {}, True),
        ("The answer is 42.", 42, {}, True),  # the last number, by default
        ("Between 3 and 42", "42", {}, True),
        ("Between 3 and 42", 3, {"extract": "first"}, True),
        ("The answer is 42.", 42, {"extract": "whole"}, False),
        ("1,234.5", 1234.5, {"extract": "whole"}, True),
        ("−7", -7, {}, True),  # a Unicode minus
        ("3.14159", 3.14, {}, False),
        ("3.14159", 3.14, {"abs_tol": 0.01}, True),
        ("105", 100, {"rel_tol": 0.05}, True),
        ("106", 100, {"rel_tol": 0.05}, False),
        ("1e3", 1000, {"extract": "whole"}, True),
        ("no number here", 1, {}, False),
        ("", 1, {}, False),
    ],
)
def test_numeric(output: str, expected: Any, config: dict[str, Any], ok: bool) -> None:
    result = run("numeric", config, output, expected)
    assert (result.value, result.label) == ((1.0, "pass") if ok else (0.0, "fail"))


def test_numeric_reports_the_difference_and_refuses_a_non_number_expected() -> None:
    result = run("numeric", {}, "41", 42)
    assert result.data == {"output": 41.0, "expected": 42.0, "difference": -1.0}
    assert result.comment == "41 differs from 42 by 1"
    bad = run("numeric", {}, "41", "forty-two")
    assert (bad.value, bad.label) == (None, "error")
    assert run("numeric", {}, "1", True).label == "error"  # a bool is not a number
    assert config_error("numeric", {"abs_tol": -1}).param == "config.abs_tol"
    assert config_error("numeric", {"extract": "middle"}).param == "config.extract"


# --- field_match ---------------------------------------------------------------------------------

EXPECTED = {"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry"], "address": {"city": "London"}}


def test_field_match_scores_each_field() -> None:
    output = '{"name": "ada lovelace", "age": 36.0, "tags": ["math"], "address": {"city": "London"}, "x": 1}'
    result = run("field_match", {"ignore_case": True}, output, EXPECTED)
    assert result.data == {"fields": {"name": 1.0, "age": 1.0, "tags": 0.0, "address": 1.0}}
    assert (result.value, result.label) == (0.75, "fail")
    assert result.comment == 'tags: expected ["math","poetry"], got ["math"]'
    # Extra keys in the output are ignored; all fields right is a pass.
    perfect = run("field_match", {}, {"content": None, **EXPECTED, "extra": True}, EXPECTED)
    assert perfect.value is not None


def test_field_match_paths_code_fences_and_tolerance() -> None:
    output = '```json\n{"address": {"city": "London "}, "age": 36.4, "tags": ["math", "poetry"]}\n```'
    config = {"fields": ["address.city", "age", "tags.1", "name"], "abs_tol": 0.5}
    result = run("field_match", config, output, EXPECTED)
    assert result.data == {"fields": {"address.city": 1.0, "age": 1.0, "tags.1": 1.0, "name": 0.0}}
    assert result.comment == 'name: expected "Ada Lovelace", got missing'
    # A JSON string as expected is parsed.
    assert run("field_match", {}, '{"ok": true}', '{"ok": true}').value == 1.0
    assert run("field_match", {}, '{"ok": 1}', {"ok": True}).value == 0.0  # true is not 1


@pytest.mark.parametrize("output", ["not json", "", "[1, 2]", '{"name": "Ada"'])
def test_field_match_on_output_that_is_not_an_object_scores_zero(output: str) -> None:
    result = run("field_match", {}, output, EXPECTED)
    assert (result.value, result.label) == (0.0, "fail")
    assert result.data == {"fields": dict.fromkeys(EXPECTED, 0.0)}
    assert result.comment


def test_field_match_aggregate_gives_each_fields_rate() -> None:
    scorer = build("field_match", {})
    results = [
        scorer.score(case('{"a": 1, "b": "x"}', {"a": 1, "b": "x"})),
        scorer.score(case('{"a": 2, "b": "x"}', {"a": 1, "b": "x"})),
        scorer.score(case('{"a": 1}', None)),  # undecided: no expected
    ]
    aggregate = scorer.aggregate(results)
    assert aggregate.value == 0.75
    assert dict(aggregate.metrics) == {"mean": 0.75, "field.a": 0.5, "field.b": 1.0}
    assert (aggregate.count, aggregate.undecided) == (2, 1)


def test_field_match_bad_expected_and_config() -> None:
    assert run("field_match", {}, "{}", ["a", "b"]).label == "error"
    assert run("field_match", {}, "{}", "not json").label == "error"
    assert run("field_match", {}, "{}", {}).label == "error"
    assert "dotted path" in config_error("field_match", {"fields": ["a..b"]}).message
    assert config_error("field_match", {"fields": []}).param == "config.fields"
