"""Run a checked recipe over a dataset version: each step reads the version the step before it made
and writes a new version of the same dataset (parent, recipe, step, counts and report recorded), so
every removal can be inspected and a stopped run resumes after its last finished step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fmops.curation.base import Batch, Source, StepContext, StepReport
from fmops.curation.recipe import PlannedStep, Recipe
from fmops.datasets import DatasetService, VersionInfo
from fmops.datasets.records import RecordKind
from fmops.errors import NotFound
from fmops.executors import Executor, LocalExecutor

BATCH_RECORDS = 2_000
Progress = Callable[[float, str], None]


def dataset_exists(datasets: DatasetService, project_id: str) -> Callable[[str], bool]:
    def exists(ref: str) -> bool:
        try:
            datasets.resolve(project_id, ref)
        except NotFound:
            return False
        return True

    return exists


def opener(datasets: DatasetService, project_id: str) -> Callable[[str], tuple[RecordKind, Source]]:
    def open_dataset(ref: str) -> tuple[RecordKind, Source]:
        version = datasets.resolve(project_id, ref)
        return version.kind, lambda: datasets.iter_records(version, BATCH_RECORDS)

    return open_dataset


def run_batch(planned: PlannedStep, ctx: StepContext, batch: Batch) -> tuple[Batch, StepReport]:
    """A `per_batch` step over one batch, wherever the executor runs it: what it kept, its report."""
    report = StepReport(planned.name)
    kept = [record for part in planned.step.run(lambda: iter([batch]), ctx, report) for record in part]
    return kept, report


@dataclass
class CurationRun:
    datasets: DatasetService
    project_id: str
    recipe: Recipe
    job_id: str | None = None
    created_by_key_id: str | None = None
    progress: Progress = lambda fraction, message: None
    check: Callable[[], None] = lambda: None
    executor: Executor = field(default_factory=LocalExecutor)

    def step(self, index: int, planned: PlannedStep, parent: VersionInfo) -> VersionInfo:
        """Run step `index` (from 0) on `parent`; the new version."""
        total_steps = len(self.recipe.steps)
        reads = max(parent.rows * planned.step.passes, 1)
        label = f"step {index + 1}/{total_steps} ({planned.name})"

        def step_progress(done: int) -> None:
            self.progress(
                (index + min(done / reads, 1.0)) / total_steps, f"{label}: {done:,} of {reads:,} reads"
            )

        ctx = StepContext(
            kind=parent.kind,
            project_id=self.project_id,
            total=parent.rows,
            open_dataset=opener(self.datasets, self.project_id),
            progress=step_progress,
            check=self.check,
        )
        report = StepReport(planned.name)
        counts: dict[str, Any] = {}
        summary: dict[str, Any] = {}

        def batches() -> Iterator[Batch]:
            source: Source = lambda: self.datasets.iter_records(parent, BATCH_RECORDS)  # noqa: E731
            if planned.step.per_batch:
                yield from self._per_batch(planned, ctx, source, report)
            else:  # the step sees every record: it runs here, in the job's process
                yield from planned.step.run(source, ctx, report)
            # create_version reads counts and report after the last batch.
            counts.update(report.counts())
            summary.update(report.to_dict())

        self.progress(index / total_steps, f"{label}: starting")
        return self.datasets.create_version(
            project_id=self.project_id,
            name=parent.name,
            kind=parent.kind,
            batches=batches(),
            parent_id=parent.id,
            source={"type": "curation", "job_id": self.job_id, "step_index": index},
            recipe=self.recipe.as_dict(),
            step=planned.as_dict(),
            counts=counts,
            report=summary,
            created_by_key_id=self.created_by_key_id,
            validate=False,  # records come from a version, and steps keep their shape
        )

    def _per_batch(
        self, planned: PlannedStep, ctx: StepContext, source: Source, report: StepReport
    ) -> Iterator[Batch]:
        """The step over each batch apart, through the executor (Ray Data on a cluster); the batches'
        reports merged in order, so the version records what one pass would have."""
        remote = StepContext(kind=ctx.kind, project_id=ctx.project_id, total=ctx.total)
        done = 0
        for kept, part in self.executor.map(partial(run_batch, planned, remote), source()):
            self.check()
            report.merge(part)
            done += part.records_in
            ctx.progress(done)
            yield kept

    def run(
        self,
        start: VersionInfo,
        done: list[str] | None = None,
        on_step: Callable[[list[str]], None] | None = None,
    ) -> list[VersionInfo]:
        """Every step from the first not in `done` (version ids of finished steps, in order);
        `on_step` gets the ids after each step, to checkpoint them."""
        made = [self.datasets.get(self.project_id, v) for v in done or []]
        current = made[-1] if made else start
        for index in range(len(made), len(self.recipe.steps)):
            current = self.step(index, self.recipe.steps[index], current)
            made.append(current)
            if on_step is not None:
                on_step([v.id for v in made])
        self.progress(1.0, f"done: {start.ref} -> {current.ref}")
        return made
