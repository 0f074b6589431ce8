"""`decontaminate: {against: EVAL_DATASET, ngram: 8}`: drop training records that share a word n-gram
with any record of the named evaluation dataset (its newest version, or NAME@VERSION), so an eval score
never measures memorised answers. The evaluation n-grams are held as one sorted array of 64-bit hashes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from pydantic import Field

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, clip, counted
from fmops.curation.shingles import shingle_hashes, word_hashes
from fmops.datasets.records import record_text
from fmops.errors import UserError


class DecontaminateOptions(StepOptions):
    against: str = Field(min_length=1, max_length=200, description="evaluation dataset: NAME or NAME@VERSION")
    ngram: int = Field(8, ge=3, le=64, description="words per n-gram")


class Decontaminate(Step[DecontaminateOptions]):
    name = "decontaminate"
    Options = DecontaminateOptions
    description: ClassVar[str] = "Drop records sharing a word n-gram with an evaluation dataset"

    def datasets(self) -> list[str]:
        return [self.options.against]

    def _eval_ngrams(self, ctx: StepContext) -> np.ndarray:
        if ctx.open_dataset is None:
            raise UserError("decontaminate needs the datasets of a project", param="recipe")
        kind, source = ctx.open_dataset(self.options.against)
        parts = []
        for batch in source():
            ctx.check()
            hashes, counts = word_hashes([record_text(kind, r) for r in batch])
            parts.append(np.unique(shingle_hashes(hashes, counts, self.options.ngram)[0]))
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        known = self._eval_ngrams(ctx)
        report.details["eval_ngrams"] = len(known)
        for batch in counted(source, ctx, report):
            texts = [ctx.text(r) for r in batch]
            hashes, counts = word_hashes(texts)
            shingles, per_doc = shingle_hashes(hashes, counts, self.options.ngram)
            hits = np.isin(shingles, known, assume_unique=False)
            owner = np.repeat(np.arange(len(batch)), per_doc)
            overlaps = np.bincount(owner[hits], minlength=len(batch))
            kept: Batch = []
            for record, text, overlap in zip(batch, texts, overlaps, strict=True):
                if overlap:
                    report.removed["eval_overlap"] += 1
                    report.example("eval_overlap", {"text": clip(text), "shared_ngrams": overlap})
                else:
                    kept.append(record)
            report.records_out += len(kept)
            yield kept
