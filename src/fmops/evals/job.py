"""The `evals.run` job: run an eval run's cases × targets through the gateway, then summarise.

A worker runs it like any job (`fmops up`'s workers, after POST /api/evals/runs); `fmops eval run`
runs it in its own process (`run_here`) so a CI gate needs no server. Calls go through a gateway
built in the job's process from the same recipe as the server's (`fmops.gateway.stack`), as the
key that started the run: its limits, budgets and the project's apply, and every call is traced.
A retried or resumed job skips the results already stored.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import update

from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.counters import make_counters
from fmops.errors import FmopsError
from fmops.evals.runner import FLUSH_S, Runner
from fmops.evals.service import KIND, PAIRWISE, EvalService
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.jobs import JobCancelled, JobContext, JobService, job_kind
from fmops.jobs.service import Claimed, JobStatus
from fmops.jobs.worker import Worker
from fmops.scorers import build
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store, utcnow
from fmops.store.models import Job

if TYPE_CHECKING:
    from fmops.datasets import DatasetService

Id = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9a-zA-Z]+$")]
Progress = Callable[[int, int], None]


class RunParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: Id


def service_for(store: Store, settings: Settings, jobs: JobService | None = None) -> EvalService:
    catalog = Catalog(store, settings, SecretBox.from_settings(settings))

    def datasets() -> DatasetService:  # pyarrow loads only for a suite whose cases are a dataset
        from fmops.artifacts import ArtifactStore
        from fmops.datasets import DatasetService

        return DatasetService(store, ArtifactStore.from_settings(settings))

    return EvalService(
        store, catalog, jobs or JobService(store, max_attempts=settings.job_max_attempts), datasets
    )


def execute(
    store: Store, settings: Settings, project_id: str, run_id: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Run (or resume) one eval run to the end and return its summary."""
    evals = service_for(store, settings)
    run = evals.get_run(project_id, run_id)
    if not run.created_by_key_id:
        raise FmopsError("the run has no key to call models with")
    principal = AuthService(store, cache_seconds=0).principal_for_key_id(run.created_by_key_id)
    targets = evals.resolve_targets(project_id, run.definition)
    cases = evals.cases(project_id, run.definition)
    done = evals.done(run_id)
    evals.set_status(run_id, "running")
    suite = run.definition["suite"]

    verdicts: list[dict[str, Any]] = []

    async def go() -> None:
        # Spans are batched as the results are, every FLUSH_S: each batch is a transaction (spans,
        # tags, spend, roll-up marks), and at the writer's ~50 ms a run spent ~0.15 ms more CPU a call.
        tracer = build_tracer(settings, store, flush_seconds=FLUSH_S)
        gateway = build_gateway(settings, store, evals.catalog, tracer, make_counters(settings))
        tracer.start()
        try:
            runner = Runner(
                store=store,
                gateway=gateway,
                principal=principal,
                run_id=run_id,
                cases=cases,
                targets=targets,
                scorers=[],
                done=done,
                concurrency=int(suite.get("concurrency", 8)),
                seed=int(suite.get("seed", 0)),
                progress=progress,
            )
            loop = asyncio.get_running_loop()
            runner.scorers = evals.build_scorers(run.definition, lambda name: runner.chat_fn(loop, name))
            await runner.run()
            pair = suite.get("pairwise")
            if pair:
                judge = build(PAIRWISE, pair["config"], chat=runner.chat_fn(loop, PAIRWISE))
                by_name = {t.name: t for t in targets}
                rows = await asyncio.to_thread(evals.rows, run_id)
                verdicts.extend(await runner.pairwise(rows, by_name[pair["a"]], by_name[pair["b"]], judge))
        finally:
            await gateway.close()
            await tracer.close()  # every call's span is stored before the run says it is done

    try:
        asyncio.run(go())
    except JobCancelled:
        evals.set_status(run_id, "cancelled")
        raise
    except BaseException as exc:
        evals.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return evals.finish(run_id, verdicts if suite.get("pairwise") else None)


@job_kind(KIND, params=RunParams, description="Run an eval suite's cases × targets and score them")
def run_eval(ctx: JobContext, params: RunParams) -> dict[str, Any]:
    store = Store(ctx.settings.database_url)

    def progress(finished: int, total: int) -> None:
        ctx.progress(finished / total if total else 1.0, f"{finished}/{total} results")

    try:
        summary = execute(store, ctx.settings, ctx.project_id, params.run_id, progress)
    finally:
        store.dispose()
    return {
        "run_id": params.run_id,
        "targets": [
            {"name": t["name"], "score": t["score"]["mean"], "errors": t["errors"]}
            for t in summary["targets"]
        ],
    }


def run_here(jobs: JobService, settings: Settings, job_id: str, stop: threading.Event | None = None) -> bool:
    """Run a queued `evals.run` job in this process, as a worker would (heartbeat, cancel, result);
    False when a worker claimed it first (then follow it instead)."""
    worker = Worker(jobs, settings, stop or threading.Event())
    now = utcnow()
    with jobs.store.write() as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(
                status=JobStatus.running,
                attempts=Job.attempts + 1,
                worker_id=worker.worker_id,
                started_at=now,
                heartbeat_at=now,
                cancel_requested=False,
            )
            .returning(Job.kind, Job.project_id, Job.params, Job.state, Job.attempts)
        ).first()
    if claimed is None:
        return False
    worker.execute(Claimed(job_id, claimed[0], claimed[1], dict(claimed[2]), claimed[3], claimed[4]))
    return True
