"""`split: {validation: 0.1, test: 0.0, seed: 0, stratify: FIELD}`: set `metadata.split` to train,
validation or test. Sizes are exact (round(n x share), per stratum when stratified) and the choice is
uniformly random given the seed: the first pass counts records (per stratum), the second picks each
record with probability quota left / records left (selection sampling), so nothing is held but counts.

`stratify` names a metadata field (`label`), or a dotted path from the record (`metadata.label`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, model_validator

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport, counted
from fmops.errors import UserError

MAX_STRATA = 10_000
SHOWN_STRATA = 50


class SplitOptions(StepOptions):
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.0, ge=0, lt=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    stratify: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _shares(self) -> SplitOptions:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave some records for training (sum below 1)")
        return self


def _value(record: dict[str, Any], path: str) -> str:
    current: Any = record
    parts = path.split(".") if "." in path else ["metadata", path]
    for part in parts:
        current = current.get(part) if isinstance(current, dict) else None
    return "" if current is None else str(current)


class Split(Step[SplitOptions]):
    name = "split"
    Options = SplitOptions
    description: ClassVar[str] = "Set metadata.split (train/validation/test), seeded, optionally stratified"
    passes = 2

    def _stratum(self, record: dict[str, Any]) -> str:
        return _value(record, self.options.stratify) if self.options.stratify else ""

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        sizes: Counter[str] = Counter()
        for batch in counted(source, ctx, report):
            sizes.update(self._stratum(r) for r in batch)
            if len(sizes) > MAX_STRATA:
                raise UserError(
                    f"stratify by {self.options.stratify!r} gives over {MAX_STRATA:,} groups; "
                    "stratify by a field with fewer distinct values",
                    param="recipe",
                )
        return self._assign(source, ctx, report, sizes)

    def _assign(
        self, source: Source, ctx: StepContext, report: StepReport, sizes: Counter[str]
    ) -> Iterator[Batch]:
        o = self.options
        left = dict(sizes)
        quota = {s: [round(n * o.validation), round(n * o.test)] for s, n in sizes.items()}
        rng = random.Random(o.seed)  # noqa: S311 (a reproducible sample, not a secret)
        assigned: dict[str, Counter[str]] = {s: Counter() for s in sizes}
        for batch in counted(source, ctx, report, offset=report.records_in):
            out: Batch = []
            for record in batch:
                stratum = self._stratum(record)
                val_left, test_left = quota[stratum]
                draw = rng.random() * left[stratum]
                if draw < val_left:
                    split = "validation"
                    quota[stratum][0] -= 1
                elif draw < val_left + test_left:
                    split = "test"
                    quota[stratum][1] -= 1
                else:
                    split = "train"
                left[stratum] -= 1
                assigned[stratum][split] += 1
                out.append({**record, "metadata": {**record.get("metadata", {}), "split": split}})
            report.records_out += len(out)
            yield out
        totals: Counter[str] = Counter()
        for counts in assigned.values():
            totals.update(counts)
        report.modified.update(totals)
        report.details["splits"] = {k: totals.get(k, 0) for k in ("train", "validation", "test")}
        if o.stratify:
            shown = sorted(assigned, key=lambda s: -sizes[s])[:SHOWN_STRATA]
            report.details["strata"] = {s: dict(assigned[s]) for s in shown}
