"""Classification metrics: an aggregate scorer.

Per case, `score` reads the predicted label from the output and compares it with the expected one:
value 1.0/0.0, label = the predicted class, `data` = {"predicted", "expected"}. Over the run,
`aggregate` computes accuracy, macro-F1 (averaged over every class seen as expected or predicted,
like scikit-learn's default), per-class precision/recall/F1 and the confusion matrix. The headline
value is the metric the config names (macro-F1 by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import regex
from pydantic import Field, field_validator, model_validator

from fmops.scorers.base import Aggregate, Case, Scorer, ScorerConfig, ScoreResult, text_of
from fmops.scorers.text import missing_expected

OTHER = "(other)"  # a prediction that is none of the configured labels


class ClassificationConfig(ScorerConfig):
    labels: list[str] | None = Field(
        None,
        max_length=1000,
        description="The classes; an output that is none of them is predicted as '(other)'. "
        "Default: any text is a class",
    )
    ignore_case: bool = Field(True, description="Labels compare case-insensitively")
    extract: Literal["whole", "search"] = Field(
        "whole",
        description="whole: the output (trimmed of spaces, quotes, bold and a final period) is the label; "
        "search: the label that occurs first in the output as a whole word (needs `labels`)",
    )
    metric: Literal["macro_f1", "accuracy"] = Field(
        "macro_f1", description="The headline value that weights and thresholds apply to"
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("give at least two labels")
            cleaned = [v.strip() for v in value]
            if any(not v for v in cleaned):
                raise ValueError("labels cannot be empty")
            folded = [v.casefold() for v in cleaned]
            if len(set(folded)) != len(folded):
                raise ValueError("labels must be distinct (ignoring case)")
            return cleaned
        return value

    @model_validator(mode="after")
    def _search_needs_labels(self) -> ClassificationConfig:
        if self.extract == "search" and not self.labels:
            raise ValueError("extract 'search' needs `labels` to search for")
        return self


class Classification(Scorer[ClassificationConfig]):
    """Per case: 1.0 when the predicted label equals the expected one, else 0.0; the label is the
    predicted class. Over the run (`aggregate`): accuracy, macro_f1, precision/recall/f1.<class> as
    metrics, the confusion matrix in `details` ({"labels": [...], "matrix": rows = expected,
    columns = predicted}); the value is `metric` (macro-F1 by default)."""

    name: ClassVar[str] = "classification"
    description: ClassVar[str] = "Classification: accuracy, macro-F1 and confusion matrix over the run"
    config_model: ClassVar[type[ScorerConfig]] = ClassificationConfig
    needs_expected: ClassVar[bool] = True
    aggregates: ClassVar[bool] = True

    def _canonical(self, text: str) -> str:
        """The configured label this text names, else the text itself (or OTHER, with labels)."""
        quotes = " \t\r\n\"'`*"
        cleaned = text.strip(quotes).removesuffix(".").strip(quotes)
        key = cleaned.casefold() if self.config.ignore_case else cleaned
        labels = self.config.labels
        if labels is None:
            return key
        for label in labels:
            if (label.casefold() if self.config.ignore_case else label) == key:
                return label
        return OTHER

    def _predicted(self, output: str) -> str:
        labels = self.config.labels
        if self.config.extract == "whole" or not labels:
            return self._canonical(output)
        flags = regex.IGNORECASE if self.config.ignore_case else 0
        best: tuple[int, str] | None = None
        for label in labels:
            found = regex.search(r"(?<!\w)" + regex.escape(label) + r"(?!\w)", output, flags)
            if found and (best is None or found.start() < best[0]):
                best = (found.start(), label)
        return best[1] if best else OTHER

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        expected = self._canonical(text_of(case.expected))
        if expected == OTHER:
            return ScoreResult.undecided(
                "error", f"the expected label {text_of(case.expected)!r} is not one of {self.config.labels}"
            )
        predicted = self._predicted(case.output_text)
        ok = predicted == expected
        comment = None if ok else f"predicted {predicted!r}, expected {expected!r}"
        return ScoreResult(
            1.0 if ok else 0.0, predicted, comment, {"predicted": predicted, "expected": expected}
        )

    def aggregate(self, results: Sequence[ScoreResult]) -> Aggregate:
        pairs = [
            (str(r.data["expected"]), str(r.data["predicted"]))
            for r in results
            if r.value is not None and r.data and "expected" in r.data
        ]
        undecided = len(results) - len(pairs)
        if not pairs:
            return Aggregate(None, {}, {}, 0, undecided)
        return classification_report(pairs, self.config.labels, self.config.metric, undecided)


def classification_report(
    pairs: Sequence[tuple[str, str]], labels: Sequence[str] | None, headline: str, undecided: int = 0
) -> Aggregate:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of (expected, predicted) pairs."""
    seen = {e for e, _ in pairs} | {p for _, p in pairs}
    order = [lb for lb in (labels or []) if lb in seen]
    order += sorted(seen - set(order) - {OTHER}) + ([OTHER] if OTHER in seen else [])
    index = {label: i for i, label in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for expected, predicted in pairs:
        matrix[index[expected]][index[predicted]] += 1
    metrics: dict[str, float] = {"accuracy": sum(matrix[i][i] for i in range(len(order))) / len(pairs)}
    f1s = []
    for i, label in enumerate(order):
        true_positive = matrix[i][i]
        predicted_count = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.update({f"precision.{label}": precision, f"recall.{label}": recall, f"f1.{label}": f1})
        f1s.append(f1)
    metrics["macro_f1"] = math.fsum(f1s) / len(f1s)
    details = {"labels": order, "matrix": matrix}
    return Aggregate(metrics[headline], metrics, details, len(pairs), undecided)
