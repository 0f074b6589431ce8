"""Scorers arrive through the `fmops.scorers` entry points; in-house ones may register themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from fmops.errors import UserError
from fmops.scorers import (
    Case,
    Scorer,
    ScorerConfig,
    ScoreResult,
    build,
    get_scorer,
    register,
    scorers,
    unregister,
)


class WordConfig(ScorerConfig):
    word: str


class HasWord(Scorer[WordConfig]):
    name: ClassVar[str] = "test.has-word"
    description: ClassVar[str] = "Passes when a word is in the output"
    config_model: ClassVar[type[ScorerConfig]] = WordConfig

    def score(self, case: Case) -> ScoreResult:
        return ScoreResult.passed(self.config.word in case.output_text.split())


BUILT_IN = [
    "json",
    "json_schema",
    "regex",
    "length",
    "contains",
    "any_of",
    "all_of",
    "exact_match",
    "numeric",
    "field_match",
    "rouge_l",
    "bleu",
    "chrf",
    "embedding_similarity",
    "classification",
    "latency",
    "cost",
    "judge",
    "judge_pairwise",
]


@pytest.fixture
def has_word() -> Iterator[type[HasWord]]:
    register(HasWord)
    yield HasWord
    unregister(HasWord.name)


def test_the_built_ins_load_through_their_entry_points() -> None:
    found = scorers()
    assert set(BUILT_IN) <= set(found)
    for name, cls in found.items():
        assert cls.name == name
        assert cls.description
        assert cls.__doc__, f"{name}: say what the scorer returns"
        assert cls.config_schema()["type"] == "object"
    facts = {n: (c.needs_model, c.needs_expected, c.aggregates) for n, c in found.items() if n in BUILT_IN}
    assert {n for n, (model, _, _) in facts.items() if model} == {"judge", "judge_pairwise"}
    assert {n for n, (_, _, aggregates) in facts.items() if aggregates} == {
        "classification",
        "bleu",
        "chrf",
        "field_match",
    }
    assert {n for n, c in found.items() if c.slow and n in BUILT_IN} == {"embedding_similarity"}
    # Those that judge the output alone can serve online evaluators (live traces have no expected output).
    assert {n for n, (_, expected, _) in facts.items() if not expected} == {
        "json",
        "json_schema",
        "regex",
        "length",
        "contains",
        "any_of",
        "all_of",
        "latency",
        "cost",
        "judge",
    }


def test_config_schema_uses_the_names_users_write() -> None:
    schema = get_scorer("json_schema").config_schema()
    assert schema["required"] == ["schema"]
    assert schema["additionalProperties"] is False


def test_an_unknown_scorer_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as caught:
        build("meteor", {})
    assert caught.value.param == "scorer"
    assert caught.value.message.startswith("unknown scorer 'meteor'; known scorers: all_of, any_of, bleu, ")


def test_a_registered_scorer_is_found_and_used(has_word: type[HasWord]) -> None:
    assert scorers()[has_word.name] is has_word
    scorer = build(has_word.name, {"word": "cat"})
    assert scorer.score(Case.of(None, "the cat sat")).value == 1.0
    assert scorer.score(Case.of(None, "concatenate")).value == 0.0
    with pytest.raises(UserError, match=r"config\.word: Field required"):
        build(has_word.name, {})


def test_unregistered_scorers_are_gone() -> None:
    register(HasWord)
    unregister(HasWord.name)
    assert HasWord.name not in scorers()


def test_results_are_finite_and_say_why_when_undecided() -> None:
    with pytest.raises(ValueError, match="finite"):
        ScoreResult(float("nan"))
    with pytest.raises(ValueError, match="needs a label"):
        ScoreResult(None)
    assert ScoreResult.undecided("timeout", "too slow").value is None


def test_case_from_a_span_reads_the_conversation_and_the_answer() -> None:
    span = {
        "trace_id": "t" * 32,
        "span_id": "s" * 16,
        "model": "small",
        "input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "params": {}},
        "output": {"role": "assistant", "content": "hello"},
    }
    case = Case.from_span(span)
    assert (case.input_text, case.output_text) == ("user: hi", "hello")
    assert case.metadata["trace_id"] == "t" * 32
    # Outputs that are not messages (an application's own spans) are read as their text.
    assert Case.of(None, {"answer": "42"}).output_text == "42"
    assert Case.of(None, {"n": 1}).output_text == '{"n":1}'
    assert Case.of(
        None, [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    ).output_text == ("a\nb")


def test_the_default_aggregate_is_the_mean_of_decided_values(has_word: type[HasWord]) -> None:
    scorer = build(has_word.name, {"word": "cat"})
    assert not scorer.aggregates
    results = [scorer.score(Case.of(None, t)) for t in ("a cat", "a dog", "cat")]
    aggregate = scorer.aggregate([*results, ScoreResult.undecided("error", "the target failed")])
    assert aggregate.value == pytest.approx(2 / 3)
    assert dict(aggregate.metrics) == {"mean": pytest.approx(2 / 3)}
    assert (aggregate.count, aggregate.undecided) == (3, 1)
    assert scorer.aggregate([]).value is None
