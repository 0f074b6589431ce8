"""`dedup: {method: exact}` drops records whose normalised text (lower case, words only) was seen
before; `dedup: {method: minhash, threshold, num_perm, bands, rows, shingle}` drops near-duplicates
(fmops.curation.minhash). Both read the input twice and hold a few bytes per record in between, never
the records; each cluster keeps its first record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, clip, counted
from fmops.curation.minhash import MinHasher, Sketches, cluster, optimal_bands
from fmops.curation.shingles import jaccard, normalise

_MINHASH_ONLY = ("threshold", "num_perm", "bands", "rows", "shingle", "seed")


class DedupOptions(StepOptions):
    method: Literal["exact", "minhash"] = "exact"
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word shingles")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations")
    bands: int | None = Field(None, ge=1, le=1024, description="LSH bands (default: chosen for threshold)")
    rows: int | None = Field(None, ge=1, le=1024, description="rows per band")
    shingle: int = Field(5, ge=1, le=64, description="words per shingle")
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _consistent(self) -> DedupOptions:
        if self.method == "exact":
            fields = type(self).model_fields
            given = [f for f in _MINHASH_ONLY if getattr(self, f) != fields[f].default]
            if given:
                raise ValueError(f"{', '.join(given)} apply to method minhash only")
            return self
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        return self

    def lsh(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.bands is not None:
            return self.bands, self.num_perm // self.bands
        if self.rows is not None:
            return self.num_perm // self.rows, self.rows
        return optimal_bands(self.threshold, self.num_perm)


def _exact_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalise(text).encode(), digest_size=8).digest(), "little")


class Dedup(Step[DedupOptions]):
    name = "dedup"
    Options = DedupOptions
    description: ClassVar[str] = "Drop exact (normalised text) or near (MinHash LSH) duplicates"
    passes = 2
    threads = 2  # sketching threads (minhash)

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        if self.options.method == "exact":
            keep, kept_as = self._exact(source, ctx, report)
            report.details["clusters"] = int(np.count_nonzero(keep))
            return self._filter(source, ctx, report, keep, kept_as, "duplicate", similarity=False)
        return self._near(source, ctx, report)

    def _exact(self, source: Source, ctx: StepContext, report: StepReport) -> tuple[Any, Any]:
        parts = [
            np.fromiter((_exact_hash(ctx.text(r)) for r in batch), np.uint64, len(batch))
            for batch in counted(source, ctx, report)
        ]
        hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        kept_as = first[inverse]
        return kept_as == np.arange(len(hashes)), kept_as

    def _near(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        o = self.options
        bands, rows = o.lsh()
        hasher = MinHasher(o.num_perm, bands, rows, o.shingle, o.seed)
        sketches = Sketches.empty(ctx.total, bands, o.num_perm)
        texts = ([ctx.text(r) for r in batch] for batch in counted(source, ctx, report))
        for band_hashes, low in hasher.sketch_all(texts, self.threads):
            sketches.add(band_hashes, low)
        found = cluster(sketches, o.threshold)
        report.details["lsh"] = {"bands": bands, "rows": rows, "candidate_pairs_similar": found.pairs}
        report.details["clusters"] = int(np.count_nonzero(found.keep))
        return self._filter(source, ctx, report, found.keep, found.kept_as, "near_duplicate", similarity=True)

    def _filter(
        self,
        source: Source,
        ctx: StepContext,
        report: StepReport,
        keep: Any,
        kept_as: Any,
        reason: str,
        *,
        similarity: bool,
    ) -> Iterator[Batch]:
        # The first records removed are the examples; their kept partners come earlier in the input.
        shown = np.flatnonzero(~keep)[:50]
        wanted = {int(kept_as[i]): "" for i in shown}
        pairs: list[dict[str, Any]] = []
        row = 0
        for batch in counted(source, ctx, report, offset=report.records_in):
            out: Batch = []
            for record in batch:
                if keep[row]:
                    out.append(record)
                    if row in wanted:
                        wanted[row] = ctx.text(record)
                else:
                    report.removed[reason] += 1
                    if len(pairs) < len(shown):
                        text, partner = ctx.text(record), wanted.get(int(kept_as[row]), "")
                        pair: dict[str, Any] = {
                            "row": row,
                            "kept_row": int(kept_as[row]),
                            "text": clip(text),
                            "kept_text": clip(partner),
                        }
                        if similarity:
                            pair["similarity"] = round(jaccard(text, partner, self.options.shingle), 4)
                        pairs.append(pair)
                row += 1
            report.records_out += len(out)
            yield out
        if pairs:
            report.examples[reason] = pairs
