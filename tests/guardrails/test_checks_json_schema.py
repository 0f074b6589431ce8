"""`json_schema`: the answer must be JSON satisfying a schema; a partial stream waits for the end."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, GuardrailError, Stage, Verdict
from fmops.guardrails.registry import build, get_guardrail

SCHEMA = {
    "type": "object",
    "required": ["label", "score"],
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
}
FINAL = Context(Stage.output)


def test_output_only() -> None:
    assert get_guardrail("json_schema").stages == frozenset({Stage.output})


def test_a_matching_answer_is_allowed_fenced_or_not() -> None:
    guard = build("json_schema", {"schema": SCHEMA})
    assert guard.check('{"label": "spam", "score": 0.9}', FINAL).allowed
    assert guard.check('```json\n{"label": "ham", "score": 1}\n```', FINAL).allowed


def test_a_wrong_answer_blocks_naming_the_rule_not_the_value() -> None:
    decision = build("json_schema", {"schema": SCHEMA}).check('{"label": "ssn 123-45-6789"}', FINAL)
    assert decision.verdict is Verdict.block
    assert "123-45-6789" not in decision.reason
    assert "at label: breaks enum=['spam', 'ham']" in decision.reason
    assert "at the top level: breaks required=['label', 'score']" in decision.reason


def test_not_json() -> None:
    decision = build("json_schema", {"schema": SCHEMA}).check("Sure! Here you go", FINAL)
    assert decision.verdict is Verdict.block
    assert decision.reason.startswith("the answer is not JSON")


def test_a_stream_is_allowed_until_its_last_chunk() -> None:
    guard = build("json_schema", {"schema": SCHEMA})
    assert guard.check('{"label": "sp', Context(Stage.output, final=False)).allowed
    assert not guard.check('{"label": "sp', FINAL).allowed


def test_a_slow_pattern_in_the_schema_is_a_guardrail_error() -> None:
    schema = {"type": "string", "pattern": "^(a|aa)+$"}
    with pytest.raises(GuardrailError, match="too slow"):
        build("json_schema", {"schema": schema}).check('"' + "a" * 5000 + 'b"', FINAL)


def test_an_invalid_schema_is_a_400() -> None:
    with pytest.raises(UserError, match=r"config\.schema: not a valid JSON Schema"):
        build("json_schema", {"schema": {"type": "strin"}})
    with pytest.raises(UserError, match=r"config\.schema: Field required"):
        build("json_schema", {})
