"""The LLM judge's request, and how it reads a judge's answer (gateway calls are tested on a server)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fmops.errors import UserError
from fmops.scorers import Case, ScorerError, build
from fmops.scorers.judge import MAX_REASON_CHARS, MAX_TOKENS, LLMJudge

CASE = Case.of(
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ]
    },
    {"role": "assistant", "content": "Paris."},
)


def judge(**config: Any) -> LLMJudge:
    scorer = build("judge", {"model": "grader", "rubric": "Correct and concise.", **config})
    assert isinstance(scorer, LLMJudge)
    return scorer


def test_request_forces_the_score_and_reason_json() -> None:
    body = judge(min_score=1, max_score=3).request(CASE)
    assert body["model"] == "grader"
    assert body["temperature"] == 0.0
    system, user = body["messages"]
    assert "Correct and concise." in system["content"]
    assert "from 1 (worst) to 3 (best)" in system["content"]
    assert user["content"] == "CONVERSATION:\nsystem: Be brief.\nuser: Capital of France?\n\nANSWER:\nParis."
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["required"] == ["score", "reason"]
    assert schema["properties"]["score"] == {"type": "integer", "enum": [1, 2, 3]}
    assert schema["properties"]["reason"] == {"type": "string"}
    assert body["max_tokens"] == MAX_TOKENS


def test_request_shows_a_reference_answer_and_cuts_long_texts() -> None:
    long_case = Case.of(
        {"messages": [{"role": "user", "content": "x" * 1000 + "END"}]},
        {"role": "assistant", "content": "START" + "y" * 1000},
        expected={"role": "assistant", "content": "Paris"},
    )
    content = judge(max_chars=200).request(long_case)["messages"][1]["content"]
    conversation, answer, reference = content.split("\n\n")
    # The end of the conversation is kept, and the start of the answer.
    assert conversation.endswith("END")
    assert len(conversation) < 230
    assert answer.startswith("ANSWER:\nSTART")
    assert len(answer) < 230
    assert reference == "REFERENCE ANSWER:\nParis"


@pytest.mark.parametrize(
    ("content", "value", "label", "comment"),
    [
        ('{"score": 5, "reason": "Exactly right."}', 1.0, "5/5", "Exactly right."),
        ('{"score": 1, "reason": "Wrong."}', 0.0, "1/5", "Wrong."),
        ('{"score": 3, "reason": ""}', 0.5, "3/5", None),
        ('{"score": 4.0, "reason": "ok"}', 0.75, "4/5", "ok"),
        ('{"score": "2", "reason": "meh"}', 0.25, "2/5", "meh"),
        # Truncated or chatty answers from small models: the fields are picked out of the text.
        ('Sure! {"score": 4, "reason": "Good but verbo', 0.75, "4/5", "Good but verbo"),
        ('```json\n{"score": 2, "reason": "Off topic."}\n```', 0.25, "2/5", "Off topic."),
    ],
)
def test_verdict_is_normalised_with_the_reason_as_comment(
    content: str, value: float, label: str, comment: str | None
) -> None:
    result = judge().verdict(content)
    assert (result.value, result.label, result.comment) == (value, label, comment)


def test_pass_threshold_labels_pass_or_fail() -> None:
    scorer = judge(min_score=0, max_score=10, pass_threshold=7)
    passed = scorer.verdict('{"score": 7, "reason": "fine"}')
    failed = scorer.verdict('{"score": 6, "reason": "close"}')
    assert (passed.value, passed.label) == (0.7, "pass")
    assert (failed.value, failed.label) == (0.6, "fail")


@pytest.mark.parametrize(
    ("content", "label"),
    [
        ("I think it is good.", "unparseable"),
        ('{"reason": "no score"}', "unparseable"),
        ('{"score": true, "reason": "x"}', "unparseable"),
        ('{"score": 9, "reason": "x"}', "out_of_range"),
        ('{"score": 0, "reason": "x"}', "out_of_range"),
    ],
)
def test_an_answer_without_a_usable_score_is_undecided(content: str, label: str) -> None:
    result = judge().verdict(content)
    assert (result.value, result.label) == (None, label)
    assert result.comment


def test_score_calls_the_model_it_is_given() -> None:
    sent: list[dict[str, Any]] = []

    def chat(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        reply = orjson.dumps({"score": 4, "reason": "Correct."}).decode()
        return {"choices": [{"message": {"role": "assistant", "content": reply}}]}

    scorer = build("judge", {"model": "grader", "rubric": "Correct."}, chat=chat)
    result = scorer.score(CASE)
    assert (result.value, result.comment) == (0.75, "Correct.")
    assert [b["model"] for b in sent] == ["grader"]
    # Nothing to judge: no call.
    assert scorer.score(Case.of(None, {"role": "assistant", "content": ""})).label == "empty"
    assert len(sent) == 1


def test_without_a_model_to_call_the_judge_says_how_to_run_it() -> None:
    with pytest.raises(ScorerError, match="evaluator job"):
        judge().score(CASE)


def test_judge_declares_the_model_it_calls() -> None:
    scorer = judge()
    assert scorer.needs_model
    assert scorer.models_used() == ["grader"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"rubric": "x"}, "config.model: Field required"),
        ({"model": "grader"}, "config.rubric: Field required"),
        ({"model": "g", "rubric": "x", "min_score": 5, "max_score": 5}, "max_score (5) must be greater"),
        (
            {"model": "g", "rubric": "x", "pass_threshold": 6},
            "pass_threshold (6) must be within the scale 1..5",
        ),
        ({"model": "g", "rubric": "x", "max_score": 1000}, "config.max_score"),
    ],
)
def test_bad_judge_config(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        build("judge", config)
    assert fragment in caught.value.message


def test_a_long_reason_is_cut() -> None:
    reason = "because " * 200
    result = judge().verdict(orjson.dumps({"score": 3, "reason": reason}).decode())
    assert result.comment == reason[:MAX_REASON_CHARS]


def test_the_prompt_is_versioned_and_recorded_with_each_verdict() -> None:
    result = judge().verdict(orjson.dumps({"score": 5, "reason": "Right."}).decode())
    assert result.data == {"score": 5, "prompt": "pointwise@1"}
    assert judge().config.model_dump()["prompt_version"] == 1
    with pytest.raises(UserError) as caught:
        judge(prompt_version=2)
    assert caught.value.param == "config.prompt_version"
    assert "no pointwise judge prompt version 2; versions: 1" in caught.value.message


def test_an_answer_without_a_score_is_asked_again_then_undecided() -> None:
    answers = ["no idea", orjson.dumps({"score": 2, "reason": "Weak."}).decode()]
    sent: list[dict[str, Any]] = []

    def chat(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        return {"choices": [{"message": {"role": "assistant", "content": answers.pop(0)}}]}

    scorer = build("judge", {"model": "grader", "rubric": "Correct."}, chat=chat)
    assert scorer.score(CASE).value == 0.25
    assert len(sent) == 2
    answers[:] = ["nope", "still nothing"]
    assert scorer.score(CASE).label == "unparseable"  # errored, never a silent 0
    assert len(sent) == 4
