"""Reference-overlap scorers: ROUGE-L (longest common subsequence of words), BLEU and chrF.

ROUGE-L is computed here rather than with the `rouge-score` package: that package ships as a source
distribution that pulls in nltk, absl-py and joblib (about 18 MB installed, 0.66 s to import) for a
few lines of arithmetic, and its tokenizer keeps only [a-z0-9], so text in any other script scores
nothing. On ASCII text the numbers here equal rouge-score's (`rougeL`, no stemming; the tests check
its published outputs); the LCS is bit-parallel (Hyyrö 2004), so long outputs stay cheap.

BLEU and chrF come from sacrebleu (imported on first use, it takes half a second). Each case gets
its sentence score; the run's aggregate is the corpus score from the summed n-gram statistics, as
`sacrebleu.corpus_score` computes it — not the mean of sentence scores, which is a different metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import Field

from fmops.scorers.base import Aggregate, Case, Scorer, ScorerConfig, ScoreResult
from fmops.scorers.text import missing_expected, references, words

# --- ROUGE-L -------------------------------------------------------------------------------------


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists, bit-parallel: O(len(b)) big-int
    operations of len(a) bits each (Hyyrö, "Bit-parallel LCS-length computation revisited", 2004)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        matches = row & masks.get(token, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(a) - row.bit_count()


def rouge_l(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of ROUGE-L between two texts, on casefolded words."""
    pred, ref = words(prediction), words(reference)
    common = lcs_length(ref, pred)
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)


class RougeConfig(ScorerConfig):
    """No options: ROUGE-L F1 on casefolded words of any script."""


class RougeL(Scorer[RougeConfig]):
    """ROUGE-L F1 in 0..1 between the output and the expected text (the best over several references
    when `expected` is a list of strings); `data` holds precision, recall and F1. The label is
    the F1 to two decimals. An empty output or reference scores 0.0."""

    name: ClassVar[str] = "rouge_l"
    description: ClassVar[str] = "ROUGE-L F1 (longest common word subsequence) against the expected text"
    config_model: ClassVar[type[ScorerConfig]] = RougeConfig
    needs_expected: ClassVar[bool] = True

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        best = max((rouge_l(case.output_text, ref) for ref in references(case.expected)), key=lambda s: s[2])
        precision, recall, f1 = best
        data = {"precision": precision, "recall": recall, "f1": f1}
        return ScoreResult(f1, f"{f1:.2f}", None, data)


# --- sacrebleu: BLEU and chrF ----------------------------------------------------------------------


class _SacreBleuScorer(Scorer[Any]):
    """Sentence score per case (0..1, sacrebleu's 0..100 divided by 100) with the segment statistics
    in `data.stats`; the aggregate sums them into the corpus score. Several references per case
    (a list of strings as `expected`) are supported; corpus statistics need the same number of
    references in every case, as sacrebleu does."""

    needs_expected: ClassVar[bool] = True
    aggregates: ClassVar[bool] = True

    def _metric(self, *, sentence: bool) -> Any:
        raise NotImplementedError

    @cached_property
    def _sentence(self) -> Any:
        return self._metric(sentence=True)

    @cached_property
    def _corpus(self) -> Any:
        return self._metric(sentence=False)

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        refs = references(case.expected)
        # The private pair corpus_score itself runs: per-segment statistics, then the score of their sum.
        stats = self._sentence._extract_corpus_statistics([case.output_text], [[r] for r in refs])
        value = self._sentence._aggregate_and_compute(stats).score / 100
        value = min(max(value, 0.0), 1.0)
        return ScoreResult(value, f"{value * 100:.1f}", None, {"stats": [_plain(x) for x in stats[0]]})

    def aggregate(self, results: Sequence[ScoreResult]) -> Aggregate:
        stats = [list(r.data["stats"]) for r in results if r.value is not None and r.data]
        if not stats:
            return Aggregate(None, {}, {}, 0, len(results))
        corpus = self._corpus._aggregate_and_compute(stats)
        value = min(max(corpus.score / 100, 0.0), 1.0)
        sentences = [r.value for r in results if r.value is not None]
        metrics = {"corpus": value, "sentence_mean": math.fsum(sentences) / len(sentences)}
        return Aggregate(value, metrics, {}, len(stats), len(results) - len(stats))


def _plain(number: Any) -> int | float:
    """A statistic as a JSON number (sacrebleu's counts are integers; keep them so)."""
    value = float(number)
    return int(value) if value.is_integer() else value


def _sacrebleu() -> Any:
    import sacrebleu.metrics  # half a second to import: only when a suite uses it

    return sacrebleu.metrics


class BleuConfig(ScorerConfig):
    tokenize: Literal["13a", "intl", "zh", "char", "none"] = Field(
        "13a", description="sacrebleu's tokenizer (13a is the WMT standard; zh for Chinese)"
    )
    lowercase: bool = False
    smooth_method: Literal["exp", "floor", "add-k", "none"] = Field(
        "exp", description="Smoothing for n-gram orders with no match"
    )
    max_ngram_order: int = Field(4, ge=1, le=8)


class Bleu(_SacreBleuScorer):
    """BLEU via sacrebleu: sentence BLEU (effective order) per case in 0..1, labelled with the 0..100
    figure; the run's aggregate is corpus BLEU (`metrics.corpus`) beside the mean sentence BLEU."""

    name: ClassVar[str] = "bleu"
    description: ClassVar[str] = "BLEU (sacrebleu) against the expected text; corpus BLEU over the run"
    config_model: ClassVar[type[ScorerConfig]] = BleuConfig

    def _metric(self, *, sentence: bool) -> Any:
        cfg = self.config
        return _sacrebleu().BLEU(
            lowercase=cfg.lowercase,
            tokenize=cfg.tokenize,
            smooth_method=cfg.smooth_method,
            max_ngram_order=cfg.max_ngram_order,
            effective_order=sentence,
        )


class ChrfConfig(ScorerConfig):
    char_order: int = Field(6, ge=1, le=10, description="Character n-gram order")
    word_order: int = Field(0, ge=0, le=4, description="Word n-gram order (2 gives chrF++)")
    beta: int = Field(2, ge=1, le=10, description="Recall is beta times as important as precision")
    lowercase: bool = False
    whitespace: bool = Field(False, description="Keep whitespace in character n-grams")


class Chrf(_SacreBleuScorer):
    """chrF (or chrF++ with word_order 2) via sacrebleu: sentence chrF per case in 0..1; the run's
    aggregate is corpus chrF from the summed statistics."""

    name: ClassVar[str] = "chrf"
    description: ClassVar[str] = "chrF / chrF++ (sacrebleu) against the expected text"
    config_model: ClassVar[type[ScorerConfig]] = ChrfConfig

    def _metric(self, *, sentence: bool) -> Any:
        cfg = self.config
        return _sacrebleu().CHRF(
            char_order=cfg.char_order,
            word_order=cfg.word_order,
            beta=cfg.beta,
            lowercase=cfg.lowercase,
            whitespace=cfg.whitespace,
        )
