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

from fmops.auth import AuthService, Principal
from fmops.catalog import Catalog
from fmops.counters import make_counters
from fmops.errors import FmopsError
from fmops.evals.runner import FLUSH_S, EvalCase, Runner
from fmops.evals.service import KIND, PAIRWISE, EvalService
from fmops.evals.targets import Target
from fmops.executors import Executor, make_executor
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.jobs import JobCancelled, JobContext, JobService, job_kind
from fmops.jobs.service import Claimed, JobStatus
from fmops.jobs.worker import Worker
from fmops.scorers import build
from fmops.secrets import SecretBox
from fmops.settings import Settings, load_settings
from fmops.store import Store, utcnow
from fmops.store.models import EvalRun, Job

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


def _caller(store: Store, evals: EvalService, run: EvalRun) -> tuple[Principal, list[Target]]:
    """The key the run calls models as, and its targets resolved."""
    if not run.created_by_key_id:
        raise FmopsError("the run has no key to call models with")
    principal = AuthService(store, cache_seconds=0).job_caller(
        run.created_by_key_id, run.project_id, run.definition.get("member")
    )
    return principal, evals.resolve_targets(run.project_id, run.definition)


async def _answer(
    store: Store,
    settings: Settings,
    evals: EvalService,
    run: EvalRun,
    caller: tuple[Principal, list[Target]],
    cases: list[EvalCase],
    done: set[tuple[int, int]],
    progress: Progress | None,
    pairwise: bool,
) -> list[dict[str, Any]]:
    """Answer and score `cases` × `targets` not in `done` as `principal`, through a gateway built
    here; then, when asked, the pairwise judge's verdicts over every stored result."""
    principal, targets = caller
    suite = run.definition["suite"]
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
            run_id=run.id,
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
        if not (pairwise and pair):
            return []
        judge = build(PAIRWISE, pair["config"], chat=runner.chat_fn(loop, PAIRWISE))
        by_name = {t.name: t for t in targets}
        rows = await asyncio.to_thread(evals.rows, run.id)
        return await runner.pairwise(rows, by_name[pair["a"]], by_name[pair["b"]], judge)
    finally:
        await gateway.close()
        await tracer.close()  # every call's span is stored before the run says it is done


def answer_shard(settings_data: dict[str, Any], project_id: str, run_id: str, indexes: list[int]) -> int:
    """One shard of a run on the executor (a Ray task): the cases with these indexes, answered and
    stored as the whole run would store them; how many cases it was given."""
    settings = load_settings(settings_data)
    store = Store(settings.database_url)
    try:
        evals = service_for(store, settings)
        run = evals.get_run(project_id, run_id)
        wanted = set(indexes)
        cases = [c for c in evals.cases(project_id, run.definition) if c.index in wanted]
        caller = _caller(store, evals, run)
        asyncio.run(_answer(store, settings, evals, run, caller, cases, evals.done(run_id), None, False))
    finally:
        store.dispose()
    return len(indexes)


def _fan_out(
    executor: Executor,
    settings: Settings,
    evals: EvalService,
    run: EvalRun,
    cases: list[EvalCase],
    done: set[tuple[int, int]],
    progress: Progress | None,
) -> None:
    """Share the cases still to answer among `ray_tasks` tasks on the cluster; each calls its own
    gateway (limits, budgets, traces as here) and writes its results, which this process follows."""
    targets = len(run.definition["suite"]["targets"])
    todo = [c.index for c in cases if any((c.index, t) not in done for t in range(targets))]
    if not todo:
        return
    shards = min(settings.ray_tasks, len(todo))
    calls = [(settings_payload(settings), run.project_id, run.id, todo[i::shards]) for i in range(shards)]
    total = len(cases) * targets

    def watch() -> None:
        if progress is not None:  # a cancel raises here, and the executor stops the tasks
            progress(len(evals.done(run.id)), total)

    executor.tasks(answer_shard, calls, watch=watch, every=0.5)


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for another process, the secret key included (JSON dumps mask it)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    if settings.secret_key is not None:
        data["secret_key"] = settings.secret_key.get_secret_value()
    return data


def execute(
    store: Store, settings: Settings, project_id: str, run_id: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Run (or resume) one eval run to the end and return its summary. On a Ray cluster the cases are
    answered there first; the judge comparing two targets (and the summary) run here."""
    evals = service_for(store, settings)
    run = evals.get_run(project_id, run_id)
    caller = _caller(store, evals, run)
    cases = evals.cases(project_id, run.definition)
    evals.set_status(run_id, "running")
    pairwise = bool(run.definition["suite"].get("pairwise"))
    try:
        executor = make_executor(settings)
        if executor.remote:
            _fan_out(executor, settings, evals, run, cases, evals.done(run_id), progress)
        verdicts = asyncio.run(
            _answer(store, settings, evals, run, caller, cases, evals.done(run_id), progress, pairwise)
        )
    except JobCancelled:
        evals.set_status(run_id, "cancelled")
        raise
    except BaseException as exc:
        evals.set_status(run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    return evals.finish(run_id, verdicts if pairwise else None)


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
