"""ROUGE-L (checked against rouge-score's outputs and a plain DP), BLEU and chrF (against sacrebleu)."""

from __future__ import annotations

import random
from typing import Any

import pytest
import sacrebleu

from fmops.errors import UserError
from fmops.scorers import Case, build
from fmops.scorers.overlap import lcs_length, rouge_l


def case(output: Any, expected: Any) -> Case:
    return Case.of(None, {"role": "assistant", "content": output}, expected=expected)


def dp_lcs(a: list[str], b: list[str]) -> int:
    """The textbook O(n x m) table, to check the bit-parallel version against."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_the_dp_table() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a = rng.choices("abcde", k=rng.randint(0, 70))
        b = rng.choices("abcde", k=rng.randint(0, 70))
        assert lcs_length(a, b) == dp_lcs(a, b)


# (reference, prediction) -> rouge-score 0.1.2's RougeScorer(["rougeL"]) precision, recall, F1.
ROUGE_SCORE_OUTPUTS = [
    (
        "the cat was found under the bed",
        "the cat was under the bed",
        (1.0, 0.8571428571428571, 0.923076923076923),
    ),
    ("police killed the gunman", "the gunman killed police", (0.5, 0.5, 0.5)),
    (
        "The quick brown fox jumps over the lazy dog.",
        "A quick brown dog jumps over the lazy fox!",
        (0.6666666666666666, 0.6666666666666666, 0.6666666666666666),
    ),
    ("It is 42, not 41.", "the answer: 42", (0.3333333333333333, 0.2, 0.25)),
    ("snake_case words-and dashes", "snake case words and dashes", (1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize(("reference", "prediction", "expected"), ROUGE_SCORE_OUTPUTS)
def test_rouge_l_equals_rouge_score_on_ascii(
    reference: str, prediction: str, expected: tuple[float, float, float]
) -> None:
    assert rouge_l(prediction, reference) == pytest.approx(expected)
    result = build("rouge_l", {}).score(case(prediction, reference))
    assert result.value == pytest.approx(expected[2])
    assert result.data == pytest.approx({"precision": expected[0], "recall": expected[1], "f1": expected[2]})


def test_rouge_l_on_other_scripts_empty_text_and_several_references() -> None:
    scorer = build("rouge_l", {})
    # rouge-score drops every non-ASCII letter; here words of any script count.
    assert scorer.score(case("Der Bär schläft", "der bär schläft tief")).value == pytest.approx(6 / 7)
    assert scorer.score(case("", "something")).value == 0.0
    assert scorer.score(case("something", "")).value == 0.0
    best = scorer.score(case("the red car", ["a blue boat", "the red car"]))
    assert (best.value, best.label) == (1.0, "1.00")
    assert scorer.score(case("x", None)).label == "no_expected"
    with pytest.raises(UserError, match=r"config\.beta"):
        build("rouge_l", {"beta": 2})


HYPOTHESES = ["the cat sat on the mat", "a quick brown fox", "hello world", "le café est chaud"]
REFERENCES = ["the cat was on the mat", "the quick brown fox jumps", "hello there world", "le café est froid"]


@pytest.mark.parametrize(
    ("name", "config", "metric"),
    [
        ("bleu", {}, sacrebleu.BLEU()),
        (
            "bleu",
            {"lowercase": True, "tokenize": "intl"},
            sacrebleu.BLEU(lowercase=True, tokenize="intl"),
        ),
        ("chrf", {}, sacrebleu.CHRF()),
        ("chrf", {"word_order": 2}, sacrebleu.CHRF(word_order=2)),
    ],
)
def test_sentence_and_corpus_scores_equal_sacrebleus(name: str, config: dict[str, Any], metric: Any) -> None:
    scorer = build(name, config)
    assert scorer.aggregates
    results = [scorer.score(case(h, r)) for h, r in zip(HYPOTHESES, REFERENCES, strict=True)]
    sentence = sacrebleu.BLEU(**{**config, "effective_order": True}) if name == "bleu" else metric
    for result, hypothesis, reference in zip(results, HYPOTHESES, REFERENCES, strict=True):
        assert result.value == pytest.approx(sentence.sentence_score(hypothesis, [reference]).score / 100)
    aggregate = scorer.aggregate([*results, scorer.score(case("no reference", None))])
    corpus = metric.corpus_score(HYPOTHESES, [REFERENCES]).score / 100
    assert aggregate.value == pytest.approx(corpus)
    assert aggregate.metrics["corpus"] == pytest.approx(corpus)
    assert (aggregate.count, aggregate.undecided) == (4, 1)


def test_bleu_and_chrf_edge_cases() -> None:
    bleu, chrf = build("bleu", {}), build("chrf", {})
    assert bleu.score(case("", "the reference")).value == 0.0
    assert chrf.score(case("", "the reference")).value == 0.0
    assert bleu.score(case("東京は大きい", "東京は大きい")).value == pytest.approx(1.0)
    assert chrf.score(case("the same", "the same")).label == "100.0"
    several = bleu.score(case("the cat sat", ["a dog ran", "the cat sat"]))
    assert several.value == pytest.approx(1.0)
    assert bleu.aggregate([]).value is None
    with pytest.raises(UserError) as caught:
        build("bleu", {"tokenize": "moses"})
    assert caught.value.param == "config.tokenize"
    with pytest.raises(UserError, match=r"config\.char_order"):
        build("chrf", {"char_order": 0})
