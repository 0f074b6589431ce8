"""What a curation step is: options (a pydantic model, unknown options refused), a `run` that streams
record batches through, and a report of what it removed or changed, with capped examples.

A step reads its input through `source()`, which opens the input from the start each time it is
called: a step that must see every record before deciding (near-duplicate clusters, exact split
sizes) reads it twice instead of holding it in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from fmops.datasets.records import RecordKind, record_text

Batch = list[dict[str, Any]]
Source = Callable[[], Iterator[Batch]]
EXAMPLES_PER_REASON = 50
EXAMPLE_CHARS = 500


class StepOptions(BaseModel):
    """Base of every step's options: a misspelt option is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=StepOptions)


def clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class StepReport:
    """Counts by reason and a few examples of each; `counts()` is what the version records as counts."""

    step: str
    records_in: int = 0
    records_out: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    modified: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # step-specific figures (e.g. split sizes)

    def wants_example(self, reason: str) -> bool:
        return len(self.examples.get(reason, ())) < EXAMPLES_PER_REASON

    def example(self, reason: str, example: dict[str, Any]) -> None:
        if self.wants_example(reason):
            self.examples.setdefault(reason, []).append(example)

    def remove(self, reason: str, text: str | None = None) -> None:
        self.removed[reason] += 1
        if text is not None and self.wants_example(reason):
            self.example(reason, {"text": clip(text)})

    def counts(self) -> dict[str, Any]:
        return {
            "in": self.records_in,
            "out": self.records_out,
            "removed": dict(self.removed),
            "modified": dict(self.modified),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, **self.counts(), "examples": self.examples, **self.details}

    def merge(self, later: StepReport) -> None:
        """Add the report of the batches after these (a `per_batch` step run batch by batch): the
        same counts, examples and figures one run over all of them would have made."""
        self.records_in += later.records_in
        self.records_out += later.records_out
        self.removed.update(later.removed)
        self.modified.update(later.modified)
        for reason, examples in later.examples.items():
            for example in examples:
                self.example(reason, example)
        self.details = _added(self.details, later.details)


def _added(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Figures summed key by key (nested mappings too); anything else keeps the later value."""
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            out[key] = _added(mine, value)
        elif isinstance(mine, int | float) and isinstance(value, int | float):
            out[key] = mine + value
        else:
            out[key] = value
    return out


@dataclass
class StepContext:
    """What a step knows of its run: the record kind, the project, and hooks for progress and cancel."""

    kind: RecordKind
    project_id: str
    total: int  # records in the input (0 if unknown)
    # Another dataset's records, by reference (decontamination); None where nothing can be looked up.
    open_dataset: Callable[[str], tuple[RecordKind, Source]] | None = None
    progress: Callable[[int], None] = lambda done: None  # records read so far in this step (all passes)
    check: Callable[[], None] = lambda: None  # raises when the job must stop

    def text(self, record: dict[str, Any]) -> str:
        return record_text(self.kind, record)


class Step(ABC, Generic[OptionsT]):
    """A registered curation step. Subclasses set `name`, `Options` and a one-line `description`."""

    name: ClassVar[str]
    Options: ClassVar[type[StepOptions]]
    description: ClassVar[str] = ""
    passes: ClassVar[int] = 1  # how many times `run` reads its input (for progress)
    # True: each record is kept, changed or dropped on its own, so batches may run apart (in other
    # processes, on a Ray cluster) and their reports be merged. False: the step sees every record.
    per_batch: ClassVar[bool] = False

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    def datasets(self) -> list[str]:
        """Datasets this step reads besides its input (checked to exist before the job starts)."""
        return []

    @abstractmethod
    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        """Yield the kept (possibly changed) records in batches; fill `report` as they pass."""


def counted(source: Source, ctx: StepContext, report: StepReport, *, offset: int = 0) -> Iterator[Batch]:
    """The input once more, counting records in, reporting progress and checking for a cancel."""
    done = offset
    first_pass = offset == 0
    for batch in source():
        ctx.check()
        if first_pass:
            report.records_in += len(batch)
        done += len(batch)
        ctx.progress(done)
        yield batch
