"""Records and a step runner for the curation tests (no database: a list is the input)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from fmops.curation import StepContext, StepReport, steps
from fmops.curation.base import Source
from fmops.datasets.records import RecordKind


def chat(user: str, answer: str = "Sure, here it is.", **metadata: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "tools": None,
        "metadata": metadata,
    }


def source_of(records: list[dict[str, Any]], batch: int = 3) -> Source:
    def source() -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(records), batch):
            yield records[i : i + batch]

    return source


def run_step(
    name: str,
    options: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    kind: RecordKind = RecordKind.chat,
    batch: int = 3,
    open_dataset: Callable[[str], tuple[RecordKind, Source]] | None = None,
) -> tuple[list[dict[str, Any]], StepReport, list[int]]:
    """Kept records, the report, and the progress values reported."""
    cls = steps()[name]
    step = cls(cls.Options.model_validate(options))
    seen: list[int] = []
    ctx = StepContext(kind, "project", len(records), open_dataset=open_dataset, progress=seen.append)
    report = StepReport(name)
    out = [r for b in step.run(source_of(records, batch), ctx, report) for r in b]
    return out, report, seen


def prose(rng: random.Random, words: int, vocabulary: int = 5000) -> list[str]:
    return [f"w{rng.randrange(vocabulary)}" for _ in range(words)]


def edited(rng: random.Random, text: list[str], changes: int) -> list[str]:
    """`text` with `changes` words replaced by new ones."""
    out = list(text)
    for i in rng.sample(range(len(out)), changes):
        out[i] = f"new{rng.randrange(10**6)}"
    return out
