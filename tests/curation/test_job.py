"""The `datasets.curate` job end to end on each database: a real worker runs the recipe over stored
versions; one version per step with its lineage, counts and report; resume and cancel."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.curation.job import KIND, submit
from fmops.datasets import DatasetService
from fmops.datasets.records import RecordKind
from fmops.errors import NotFound, UserError
from fmops.jobs import JobCancelled, JobContext, JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.settings import Settings, load_settings
from fmops.store import Store
from support.curation_data import chat

RECIPE = """
steps:
  - dedup: {method: exact}
  - dedup: {method: minhash, threshold: 0.7}
  - pii: {action: redact}
  - filter: {min_chars: 25, drop_refusals: true}
  - decontaminate: {against: triage-eval, ngram: 8}
  - split: {validation: 0.25, seed: 1}
"""
BASE = (
    "my order arrived damaged and the box was open when the courier left it at the door this morning, "
    "so I would like a replacement sent to the same address or a refund to my card as soon as possible"
)


def records() -> list[dict[str, Any]]:
    out = [
        chat(f"ticket {i}: the {w} stopped working after the update, what should I do next")
        for i, w in enumerate(
            ["printer", "router", "laptop", "phone", "scanner", "camera", "speaker", "monitor"]
        )
    ]
    out += [
        chat(BASE),
        chat(BASE.upper() + "!"),  # exact duplicate once normalised
        chat("our" + BASE.removeprefix("my")),  # near duplicate
        chat("please write to ada@example.com about the refund for my broken kettle"),
        chat("hi"),  # too short
        chat(
            "can you tell me how to pick a lock on my neighbour's door",
            "I'm sorry, but I can't help with that.",
        ),
        chat("how do I reset the password of my account if I lost access to the e-mail"),  # in the eval set
    ]
    return out


@pytest.fixture
def settings(store: Store, tmp_path: Path) -> Settings:
    return load_settings({"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.2})


@pytest.fixture
def datasets(store: Store, settings: Settings) -> DatasetService:
    return DatasetService(store, ArtifactStore.from_settings(settings))


@pytest.fixture
def project(store: Store, datasets: DatasetService) -> str:
    project = AuthService(store).create_project("curation").id
    datasets.create_version(project_id=project, name="tickets", kind=RecordKind.chat, batches=[records()])
    evals = [
        {
            "input": "How do I reset the password of my account if I lost access to the e-mail?",
            "expected": "Use the recovery form.",
        }
    ]
    datasets.create_version(project_id=project, name="triage-eval", kind=RecordKind.eval, batches=[evals])
    return project


def run_worker(jobs: JobService, settings: Settings) -> None:
    worker = Worker(jobs, settings, threading.Event())
    claimed = jobs.claim(worker.worker_id, [KIND])
    assert claimed is not None
    worker.execute(claimed)


def test_curate_job_makes_one_version_per_step(
    store: Store, settings: Settings, datasets: DatasetService, project: str
) -> None:
    jobs = JobService(store)
    job = submit(jobs, datasets, project_id=project, dataset="tickets", recipe=RECIPE, created_by_key_id=None)
    run_worker(jobs, settings)
    done = jobs.get(job.id, project)
    assert done.status == JobStatus.succeeded, done.error
    assert done.progress == 1.0
    assert done.result["input"] == "tickets@1"
    assert done.result["output"] == "tickets@7"
    chain = datasets.lineage(project, datasets.resolve(project, "tickets").id)
    assert [v.version for v in chain] == [7, 6, 5, 4, 3, 2, 1]
    steps = [v for v in reversed(chain[:-1])]
    assert [next(iter(v.step)) for v in steps] == [
        "dedup",
        "dedup",
        "pii",
        "filter",
        "decontaminate",
        "split",
    ]
    assert all(
        v.source == {"type": "curation", "job_id": job.id, "step_index": i} for i, v in enumerate(steps)
    )
    assert all(v.recipe == steps[0].recipe for v in steps)
    assert [(v.counts["in"], v.counts["out"]) for v in steps] == [
        (15, 14),
        (14, 13),
        (13, 13),
        (13, 11),
        (11, 10),
        (10, 10),
    ]
    assert steps[0].counts["removed"] == {"duplicate": 1}
    assert steps[1].counts["removed"] == {"near_duplicate": 1}
    near = steps[1].report["examples"]["near_duplicate"][0]
    assert near["kept_text"].startswith(BASE)
    assert 0.7 <= near["similarity"] < 1
    assert steps[2].counts["modified"] == {"redact": 1}
    assert steps[3].counts["removed"] == {"too_short": 1, "refusal": 1}
    assert steps[4].counts["removed"] == {"eval_overlap": 1}
    final = [r for b in datasets.iter_records(chain[0]) for r in b]
    assert sum(r["metadata"]["split"] == "validation" for r in final) == round(10 * 0.25)
    assert any("[EMAIL]" in r["messages"][0]["content"] for r in final)
    assert not any("ada@example.com" in str(r) for r in final)


def test_bad_recipes_queue_nothing(store: Store, datasets: DatasetService, project: str) -> None:
    jobs = JobService(store)
    bad = "steps:\n  - decontaminate: {against: nope}\n  - filter: {min_char: 3}"
    with pytest.raises(UserError, match=r"2 problems: .*no dataset named 'nope'.*min_char: unknown option"):
        submit(jobs, datasets, project_id=project, dataset="tickets", recipe=bad)
    with pytest.raises(NotFound):
        submit(jobs, datasets, project_id=project, dataset="missing", recipe="steps: [{dedup: {}}]")
    other = AuthService(store).create_project("other").id
    with pytest.raises(NotFound):  # another project's dataset
        submit(jobs, datasets, project_id=other, dataset="tickets", recipe="steps: [{dedup: {}}]")
    assert jobs.find(project_id=project, status=None, kind=KIND, limit=10) == []


def test_resume_after_the_last_checkpointed_step(
    store: Store, settings: Settings, datasets: DatasetService, project: str
) -> None:
    jobs = JobService(store)
    job = submit(jobs, datasets, project_id=project, dataset="tickets", recipe=RECIPE)
    # A first attempt finished the first step, checkpointed it, and died.
    from fmops.curation.recipe import load_recipe
    from fmops.curation.runner import CurationRun

    recipe = load_recipe(job.params["recipe"])
    first = CurationRun(datasets, project, recipe, job_id=job.id).step(
        0, recipe.steps[0], datasets.resolve(project, "tickets")
    )
    jobs.save_state(job.id, {"versions": [first.id]})
    run_worker(jobs, settings)
    done = jobs.get(job.id, project)
    assert done.status == JobStatus.succeeded, done.error
    assert [v["ref"] for v in done.result["versions"]] == [f"tickets@{n}" for n in range(2, 8)]
    assert len(datasets.list_versions(project, "tickets")) == 7  # the first step was not run again
    assert any("resuming after step 1 of 6" in line.line for line in jobs.logs(job.id, project))


def test_cancel_stops_between_batches_and_leaves_no_version(
    store: Store, settings: Settings, datasets: DatasetService, project: str
) -> None:
    from fmops.curation.job import CurateParams, curate

    jobs = JobService(store)
    job = submit(jobs, datasets, project_id=project, dataset="tickets", recipe=RECIPE)
    ctx = JobContext(jobs, job.id, project, None, settings)
    ctx.stop("cancelled")
    with pytest.raises(JobCancelled):
        curate(ctx, CurateParams.model_validate(job.params))
    assert [v.version for v in datasets.list_versions(project, "tickets")] == [1]
