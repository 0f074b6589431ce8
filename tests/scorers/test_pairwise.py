"""The pairwise judge: both orders asked, a win only when they agree, the prompt's version recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from fmops.errors import UserError
from fmops.scorers import Case, ScorerError, build
from fmops.scorers.pairwise import PairwiseJudge, parse_winner

CASE = Case.of(
    {"messages": [{"role": "user", "content": "Capital of France?"}]},
    {"role": "assistant", "content": "Paris."},
    expected={"role": "assistant", "content": "It is Lyon."},
)


def reply(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def scripted(*answers: str) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], list[dict[str, Any]]]:
    """A judge model that gives these answers in turn, and the requests it got."""
    sent: list[dict[str, Any]] = []
    queue = list(answers)

    def chat(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        return reply(queue.pop(0))

    return chat, sent


def verdict(winner: str, reason: str = "ok") -> str:
    return orjson.dumps({"winner": winner, "reason": reason}).decode()


def judge(chat: Any = None, **config: Any) -> PairwiseJudge:
    scorer = build("judge_pairwise", {"model": "grader", **config}, chat=chat)
    assert isinstance(scorer, PairwiseJudge)
    return scorer


def test_a_win_needs_both_orders_to_agree() -> None:
    # First order shows the output as A; the swapped order shows it as B.
    chat, sent = scripted(verdict("A", "Paris is right"), verdict("B", "B is right"))
    result = judge(chat).score(CASE)
    assert (result.value, result.label, result.comment) == (1.0, "win", "Paris is right")
    assert result.data == {
        "verdicts": ["A", "A"],
        "reasons": ["Paris is right", "B is right"],
        "prompt": "pairwise@1",
    }
    first, second = (body["messages"][1]["content"] for body in sent)
    assert "RESPONSE A:\nParis.\n\nRESPONSE B:\nIt is Lyon." in first
    assert "RESPONSE A:\nIt is Lyon.\n\nRESPONSE B:\nParis." in second
    assert sent[0]["response_format"]["json_schema"]["schema"]["properties"]["winner"]["enum"] == [
        "A",
        "B",
        "tie",
    ]
    assert sent[0]["model"] == "grader"

    chat, _ = scripted(verdict("B"), verdict("A"))
    loss = judge(chat).score(CASE)
    assert (loss.value, loss.label) == (0.0, "loss")


def test_position_bias_becomes_a_tie() -> None:
    chat, _ = scripted(verdict("A"), verdict("A"))  # always the first shown: no real preference
    result = judge(chat).score(CASE)
    assert (result.value, result.label) == (0.5, "tie")
    assert result.data is not None
    assert result.data["verdicts"] == ["A", "B"]
    assert "disagree" in (result.comment or "")
    chat, _ = scripted(verdict("tie"), verdict("tie"))
    assert judge(chat).score(CASE).label == "tie"


def test_without_swap_one_call_decides() -> None:
    chat, sent = scripted(verdict("B"))
    assert judge(chat, swap=False).score(CASE).label == "loss"
    assert len(sent) == 1


def test_compare_two_targets_outputs() -> None:
    chat, sent = scripted(verdict("A"), verdict("B"))
    other = {"role": "assistant", "content": "Marseille"}
    assert judge(chat).compare(CASE, other).label == "win"
    assert "RESPONSE B:\nMarseille" in sent[0]["messages"][1]["content"]


def test_an_unparseable_judge_is_asked_again_then_the_case_is_undecided() -> None:
    chat, sent = scripted("I like the first one", verdict("A"), verdict("B"))
    assert judge(chat).score(CASE).label == "win"
    assert len(sent) == 3
    chat, sent = scripted("hmm", "still no JSON")
    result = judge(chat).score(CASE)
    assert (result.value, result.label) == (None, "unparseable")
    assert len(sent) == 2  # retries=1: two asks, then it gives up (never scored as a loss)


@pytest.mark.parametrize(
    ("content", "winner"),
    [
        ('{"winner": "a", "reason": "x"}', "A"),
        ('{"winner": "TIE"}', "tie"),
        ('Sure! {"winner": "B", "reason": "cut off', "B"),
        ('{"winner": "C"}', None),
        ("", None),
    ],
)
def test_parse_winner(content: str, winner: str | None) -> None:
    assert parse_winner(content)[0] == winner


def test_pairwise_edge_cases_and_config() -> None:
    with pytest.raises(ScorerError, match="needs a model"):
        judge().score(CASE)
    empty = Case.of(None, "", expected="")
    assert judge(scripted()[0]).score(empty).label == "empty"
    assert judge().score(Case.of(None, "x")).label == "no_expected"
    scorer = judge()
    assert scorer.needs_model
    assert scorer.needs_expected
    assert scorer.models_used() == ["grader"]
    with pytest.raises(UserError) as caught:
        build("judge_pairwise", {"model": "g", "prompt_version": 9})
    assert caught.value.param == "config.prompt_version"
    assert "no pairwise judge prompt version 9; versions: 1" in caught.value.message
    with pytest.raises(UserError, match=r"config\.model: Field required"):
        build("judge_pairwise", {})
