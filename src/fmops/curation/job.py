"""The `datasets.curate` job: a recipe over a dataset version, one new version per step.

The recipe is checked when the job is submitted (`submit`: unknown steps, options and datasets are
one 400 listing them all) and again when it runs. After each step the job checkpoints the versions
made so far; a retried or resumed job starts after the last of them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fmops.artifacts import ArtifactStore
from fmops.curation.recipe import load_recipe
from fmops.curation.runner import CurationRun, dataset_exists
from fmops.datasets import DatasetService
from fmops.executors import make_executor
from fmops.jobs import JobContext, JobService, job_kind
from fmops.store import Store
from fmops.store.models import Job

KIND = "datasets.curate"
Ref = Annotated[str, StringConstraints(min_length=1, max_length=210)]


class CurateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Ref = Field(description="NAME, NAME@VERSION or a version id")
    recipe: dict[str, Any] = Field(description="{steps: [{step: {options}}, ...]}")


def submit(
    jobs: JobService,
    datasets: DatasetService,
    *,
    project_id: str,
    dataset: str,
    recipe: str | dict[str, Any],
    created_by_key_id: str | None = None,
) -> Job:
    """Check the dataset and the whole recipe, then queue the job (nothing is queued on a problem)."""
    version = datasets.resolve(project_id, dataset)
    checked = load_recipe(recipe, dataset_exists=dataset_exists(datasets, project_id))
    params = CurateParams(dataset=version.id, recipe=checked.as_dict())
    return jobs.submit(
        KIND, params.model_dump(mode="json"), project_id=project_id, created_by_key_id=created_by_key_id
    )


@job_kind(
    KIND, params=CurateParams, description="Curate a dataset version with a recipe: one new version per step"
)
def curate(ctx: JobContext, params: CurateParams) -> dict[str, Any]:
    settings = ctx.settings
    store = Store(settings.database_url)
    try:
        datasets = DatasetService(store, ArtifactStore.from_settings(settings))
        start = datasets.resolve(ctx.project_id, params.dataset)
        recipe = load_recipe(params.recipe, dataset_exists=dataset_exists(datasets, ctx.project_id))
        run = CurationRun(
            datasets,
            ctx.project_id,
            recipe,
            job_id=ctx.job_id,
            progress=ctx.progress,
            check=ctx.check,
            executor=make_executor(settings),
        )
        done = list(ctx.state.get("versions", []))
        if done:
            ctx.log(f"resuming after step {len(done)} of {len(recipe.steps)}")
        made = run.run(start, done, on_step=lambda ids: ctx.checkpoint({"versions": ids}))
        for version in made[len(done) :]:
            ctx.log(f"{version.ref}: {version.counts.get('in')} -> {version.counts.get('out')} records")
    finally:
        store.dispose()
    final = made[-1] if made else start
    return {
        "dataset": start.name,
        "input": start.ref,
        "output": final.ref,
        "versions": [{"ref": v.ref, "id": v.id, "step": v.step, "counts": v.counts} for v in made],
    }
