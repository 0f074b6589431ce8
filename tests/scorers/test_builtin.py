"""The cheap built-in scorers on the edge cases model output really has; bad configs are 400s."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fmops.errors import UserError
from fmops.scorers import Case, ScoreResult, build
from fmops.scorers.safe_regex import MATCH_TIMEOUT_S


def answer(content: Any) -> Case:
    """A gateway span's case: the request's messages and the assistant message it got."""
    return Case.of(
        {"messages": [{"role": "user", "content": "answer in JSON"}], "params": {}},
        {"role": "assistant", "content": content},
    )


def run(scorer: str, config: dict[str, Any], content: Any) -> ScoreResult:
    return build(scorer, config).score(answer(content))


def config_error(scorer: str, config: dict[str, Any]) -> UserError:
    with pytest.raises(UserError) as caught:
        build(scorer, config)
    assert caught.value.status_code == 400
    return caught.value


# --- json ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "config", "ok"),
    [
        ('{"a": [1, 2, {"b": null}]}', {}, True),
        ("[]", {}, True),
        ("42", {}, True),  # any JSON value, not only objects
        ('{"a": 1', {}, False),
        ("{'a': 1}", {}, False),  # Python, not JSON
        ("", {}, False),
        ("   ", {}, False),
        ('```json\n{"a": 1}\n```', {}, False),
        ('```json\n{"a": 1}\n```', {"allow_code_fence": True}, True),
        ('```\n{"a": 1}\n```', {"allow_code_fence": True}, True),
        ('  ```json\n{"a": 1}```  ', {"allow_code_fence": True}, True),
        ('Here you go: ```json\n{"a": 1}\n```', {"allow_code_fence": True}, False),
        (None, {}, False),  # a tool-call answer has no content
    ],
)
def test_json_valid(content: Any, config: dict[str, Any], ok: bool) -> None:
    result = run("json", config, content)
    assert (result.value, result.label) == ((1.0, "pass") if ok else (0.0, "fail"))
    assert (result.comment is None) == ok


def test_json_failure_says_why() -> None:
    assert run("json", {}, "").comment == "the output is empty"
    comment = run("json", {}, '{"a": 1').comment
    assert comment is not None
    assert comment.startswith("not valid JSON")


def test_output_text_is_the_text_of_content_parts() -> None:
    parts = [{"type": "text", "text": '{"a":'}, {"type": "text", "text": " 1}"}]
    case = answer(parts)
    assert case.output_text == '{"a":\n 1}'
    assert build("json", {}).score(case).value == 1.0


# --- json_schema --------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^[A-Z]"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("content", "ok", "fragment"),
    [
        ('{"name": "Ada", "age": 36}', True, None),
        ('{"name": "Ada"}', False, "'age' is a required property"),
        ('{"name": "ada", "age": 36}', False, "at name: 'ada' does not match"),
        ('{"name": "Ada", "age": -1}', False, "at age: -1 is less than the minimum of 0"),
        (
            '{"name": "Ada", "age": 36, "x": 1}',
            False,
            "additional properties are not allowed ('x' unexpected)",
        ),
        ("[1]", False, "is not of type 'object'"),
        ("not json", False, "not valid JSON"),
    ],
)
def test_json_schema_valid(content: str, ok: bool, fragment: str | None) -> None:
    result = run("json_schema", {"schema": PERSON}, content)
    assert result.value == (1.0 if ok else 0.0)
    if fragment is not None:
        assert result.comment is not None
        assert fragment in result.comment


def test_json_schema_reports_at_most_a_few_errors() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    comment = run("json_schema", {"schema": schema}, "[" + ",".join(["1"] * 50) + "]").comment
    assert comment is not None
    assert comment.count("is not of type") == 5


def test_json_schema_pattern_properties_and_formats() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert run("json_schema", {"schema": schema}, '{"x-a": 1}').value == 1.0
    assert run("json_schema", {"schema": schema}, '{"x-a": "1"}').value == 0.0
    assert run("json_schema", {"schema": schema}, '{"y": 1}').value == 0.0
    email = {"type": "string", "format": "email"}
    assert run("json_schema", {"schema": email}, '"nope"').value == 1.0  # format is an annotation...
    assert (
        run("json_schema", {"schema": email, "check_formats": True}, '"nope"').value == 0.0
    )  # ...unless asked


def test_json_schema_with_a_backtracking_pattern_stops_quickly() -> None:
    schema = {"type": "string", "pattern": "^(a|aa)+$"}
    started = time.perf_counter()
    result = run("json_schema", {"schema": schema}, '"' + "a" * 5000 + 'b"')
    assert time.perf_counter() - started < 20 * MATCH_TIMEOUT_S
    assert (result.value, result.label) == (None, "timeout")


def test_json_schema_remote_refs_are_not_fetched() -> None:
    schema = {"$ref": "https://example.invalid/schema.json"}
    result = run("json_schema", {"schema": schema}, "{}")
    assert (result.value, result.label) == (None, "error")
    assert result.comment is not None
    assert "example.invalid" in result.comment


@pytest.mark.parametrize(
    ("config", "param", "fragment"),
    [
        ({}, "config.schema", "Field required"),
        ({"schema": {"type": "nope"}}, "config.schema", "not a valid JSON Schema at type"),
        (
            {"schema": {"type": "string", "pattern": "(("}},
            "config.schema",
            "not a valid JSON Schema at pattern",
        ),
        ({"schema": {"minimum": "zero"}}, "config.schema", "not a valid JSON Schema at minimum"),
        (
            {"schema": {"patternProperties": {"a": {}}, "unevaluatedProperties": False}},
            "config.schema",
            "cannot be combined",
        ),
        ({"schema": PERSON, "strict": True}, "config.strict", "Extra inputs are not permitted"),
    ],
)
def test_json_schema_bad_config(config: dict[str, Any], param: str, fragment: str) -> None:
    error = config_error("json_schema", config)
    assert error.param == param
    assert fragment in error.message


# --- regex --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "content", "ok"),
    [
        ({"pattern": r"\d{3}"}, "call 555 now", True),
        ({"pattern": r"\d{3}", "full_match": True}, "call 555 now", False),
        ({"pattern": r"\d{3}", "full_match": True}, "555", True),
        ({"pattern": "paris"}, "Paris", False),
        ({"pattern": "paris", "ignore_case": True}, "Paris", True),
        ({"pattern": "^b"}, "a\nb", False),
        ({"pattern": "^b", "multiline": True}, "a\nb", True),
        ({"pattern": "a.b", "dotall": True}, "a\nb", True),
        ({"pattern": "as an AI", "expect": "no_match"}, "Sure, here it is.", True),
        ({"pattern": "as an AI", "expect": "no_match"}, "Well, as an AI model...", False),
        ({"pattern": "x*"}, "", True),
    ],
)
def test_regex(config: dict[str, Any], content: str, ok: bool) -> None:
    result = run("regex", config, content)
    assert result.value == (1.0 if ok else 0.0)


def test_regex_failure_names_the_pattern() -> None:
    assert run("regex", {"pattern": r"\d"}, "none").comment == r"the output does not match '\\d'"


def test_a_redos_pattern_returns_quickly_as_a_timeout() -> None:
    scorer = build("regex", {"pattern": "^(a|aa)+$"})
    started = time.perf_counter()
    result = scorer.score(answer("a" * 5000 + "!"))
    elapsed = time.perf_counter() - started
    assert elapsed < 20 * MATCH_TIMEOUT_S, f"took {elapsed:.2f}s"
    assert (result.value, result.label) == (None, "timeout")
    assert result.comment is not None
    assert "catastrophic backtracking" in result.comment
    # The same pattern on ordinary output is fine.
    assert scorer.score(answer("aaaa")).value == 1.0


@pytest.mark.parametrize(
    ("config", "param", "fragment"),
    [
        ({"pattern": "(("}, "config.pattern", "not a valid regular expression"),
        ({"pattern": ""}, "config.pattern", "at least 1 character"),
        ({}, "config.pattern", "Field required"),
        ({"pattern": "a" * 3000}, "config.pattern", "the most allowed is"),
        ({"pattern": "a", "expect": "maybe"}, "config.expect", "'match' or 'no_match'"),
        ({"pattern": "a", "ignore_case": "yes please"}, "config.ignore_case", "valid boolean"),
    ],
)
def test_regex_bad_config(config: dict[str, Any], param: str, fragment: str) -> None:
    error = config_error("regex", config)
    assert error.param == param
    assert fragment in error.message


# --- length -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "content", "ok", "comment"),
    [
        ({"max": 5}, "hello", True, "5 characters"),
        ({"max": 4}, "hello", False, "5 characters, more than the maximum of 4"),
        ({"min": 6}, "hello", False, "5 characters, fewer than the minimum of 6"),
        ({"min": 2, "max": 3, "unit": "words"}, "one  two\nthree", True, "3 words"),
        ({"min": 2, "unit": "words"}, "   ", False, "0 words, fewer than the minimum of 2"),
        ({"min": 1}, None, False, "0 characters, fewer than the minimum of 1"),
        ({"min": 0, "max": 0}, "", True, "0 characters"),
    ],
)
def test_length(config: dict[str, Any], content: Any, ok: bool, comment: str) -> None:
    result = run("length", config, content)
    assert (result.value, result.comment) == (1.0 if ok else 0.0, comment)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "set min, max or both"),
        ({"min": 5, "max": 2}, "min (5) is greater than max (2)"),
        ({"min": -1}, "greater than or equal to 0"),
        ({"max": 3, "unit": "tokens"}, "'characters' or 'words'"),
    ],
)
def test_length_bad_config(config: dict[str, Any], fragment: str) -> None:
    assert fragment in config_error("length", config).message


# --- contains -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "content", "ok", "comment"),
    [
        ({"strings": ["paris", "lyon"]}, "I love PARIS.", True, None),
        ({"strings": ["paris", "lyon"]}, "Marseille", False, "none of ['paris', 'lyon'] found"),
        ({"strings": ["paris", "lyon"], "mode": "all"}, "Paris and Lyon", True, None),
        ({"strings": ["paris", "lyon"], "mode": "all"}, "Paris only", False, "missing ['lyon']"),
        ({"strings": ["paris"], "case_sensitive": True}, "PARIS", False, "none of ['paris'] found"),
        ({"strings": ["password", "secret"], "mode": "none"}, "all clear", True, None),
        ({"strings": ["password", "secret"], "mode": "none"}, "the Secret is", False, "found ['secret']"),
        ({"strings": ["straße"]}, "STRASSE", True, None),  # casefold, not lower
    ],
)
def test_contains(config: dict[str, Any], content: str, ok: bool, comment: str | None) -> None:
    result = run("contains", config, content)
    assert (result.value, result.comment) == (1.0 if ok else 0.0, comment)


@pytest.mark.parametrize(
    ("config", "param"),
    [({}, "config.strings"), ({"strings": []}, "config.strings"), ({"strings": [""]}, "config.strings.0")],
)
def test_contains_bad_config(config: dict[str, Any], param: str) -> None:
    assert config_error("contains", config).param == param
