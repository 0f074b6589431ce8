"""Classification: a per-case label, then accuracy, macro-F1 and the confusion matrix over the run."""

from __future__ import annotations

from typing import Any

import pytest

from fmops.errors import UserError
from fmops.scorers import Case, build
from fmops.scorers.classification import OTHER

LABELS = ["billing", "bug", "other"]


def case(output: Any, expected: Any) -> Case:
    return Case.of(None, {"role": "assistant", "content": output}, expected=expected)


def test_per_case_part_is_the_predicted_label() -> None:
    scorer = build("classification", {"labels": LABELS})
    right = scorer.score(case(' "Billing". ', "billing"))
    assert (right.value, right.label, right.data) == (
        1.0,
        "billing",
        {"predicted": "billing", "expected": "billing"},
    )
    wrong = scorer.score(case("bug", "Billing"))
    assert (wrong.value, wrong.label, wrong.comment) == (0.0, "bug", "predicted 'bug', expected 'billing'")
    unknown = scorer.score(case("I think it's a billing bug", "bug"))
    assert (unknown.value, unknown.label) == (0.0, OTHER)
    assert scorer.score(case("", "bug")).label == OTHER
    assert scorer.score(case("bug", "feature")).label == "error"  # expected is not a label: a suite bug
    assert scorer.score(case("bug", None)).label == "no_expected"


def test_search_picks_the_first_label_mentioned() -> None:
    scorer = build("classification", {"labels": LABELS, "extract": "search"})
    assert scorer.score(case("This is a Bug report, not billing.", "bug")).label == "bug"
    assert scorer.score(case("debugging", "bug")).label == OTHER  # whole words only
    strict = build("classification", {"labels": ["Yes", "No"], "ignore_case": False})
    assert strict.score(case("yes", "Yes")).label == OTHER


def test_aggregate_gives_accuracy_macro_f1_and_the_confusion_matrix() -> None:
    scorer = build("classification", {"labels": LABELS})
    assert scorer.aggregates
    pairs = [
        ("billing", "billing"),
        ("billing", "billing"),
        ("bug", "billing"),
        ("bug", "bug"),
        ("other", "bug"),
        ("nonsense", "other"),
    ]
    results = [scorer.score(case(out, exp)) for out, exp in pairs] + [scorer.score(case("bug", None))]
    aggregate = scorer.aggregate(results)
    assert (aggregate.count, aggregate.undecided) == (6, 1)
    # rows: expected, columns: predicted; an answer that is no label is its own column.
    assert aggregate.details == {
        "labels": ["billing", "bug", "other", OTHER],
        "matrix": [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
    }
    metrics = aggregate.metrics
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    # billing: P 2/2, R 2/3 -> F1 0.8; bug: P 1/2, R 1/2 -> 0.5; other: 0; (other): 0 (as scikit-learn).
    assert metrics["f1.billing"] == pytest.approx(0.8)
    assert metrics["f1.bug"] == pytest.approx(0.5)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5) / 4)
    assert aggregate.value == metrics["macro_f1"]
    by_accuracy = build("classification", {"labels": LABELS, "metric": "accuracy"}).aggregate(results)
    assert by_accuracy.value == pytest.approx(0.5)
    assert scorer.aggregate([]).value is None


def test_without_labels_any_text_is_a_class() -> None:
    scorer = build("classification", {})
    results = [
        scorer.score(case(o, e)) for o, e in [("Positive", "positive"), ("négatif", "Négatif"), ("x", "y")]
    ]
    aggregate = scorer.aggregate(results)
    assert aggregate.details["labels"] == ["négatif", "positive", "x", "y"]
    assert aggregate.metrics["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("config", "param", "fragment"),
    [
        ({"labels": ["only"]}, "config.labels", "at least two labels"),
        ({"labels": ["a", "A"]}, "config.labels", "distinct"),
        ({"labels": ["a", " "]}, "config.labels", "cannot be empty"),
        ({"extract": "search"}, "config", "needs `labels`"),
        ({"metric": "f2"}, "config.metric", "config.metric"),
    ],
)
def test_bad_config(config: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        build("classification", config)
    assert caught.value.param == param
    assert fragment in caught.value.message
