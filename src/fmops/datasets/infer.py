"""The `datasets.infer` job: batch inference. Every record of a dataset version is answered through
the gateway, as the key that started the job, by a model, a prompt version on a model, or an
endpoint; the answers become a new version of a chat dataset (the input as sent, then the answer),
ready to curate and fine-tune on.

- Checked before anything is queued (`submit`): the dataset and version, the model or endpoint and
  prompt, the parameters, the output dataset (a chat dataset, or a new one), that there are records
  and that every one has an input to answer. One 4xx says what to fix; nothing is queued.
- Work: the records go in chunks of `CHUNK_RECORDS` to the executor (`FMOPS_EXECUTOR`): in this
  process, or on a Ray cluster as Ray tasks (`FMOPS_RAY_TASKS` chunks side by side). Each chunk is
  answered by a gateway built where it runs (`infer_calls.answer_chunk`). In this process a cancel
  is seen between calls and the progress moves with each answer; on a cluster a cancel stops the
  running tasks (checked every half second) and the progress moves as chunks end.
- Durability: each answered chunk is written as a part file in the artifact store and checkpointed;
  a job interrupted (shutdown, a lost worker) resumes after the last part. The version is written
  from the parts at the end, whole or not at all: a cancel or a failure leaves no version, and the
  parts are removed.
- Failures: a record whose call failed is kept and marked (`metadata.inference.status: error`, with
  the reason), counted in the version's counts (`ok`, `error`) and the job's result.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from fmops.artifacts import ArtifactStore
from fmops.datasets.infer_calls import WATCHES, answer_chunk, case_input, resolve_target, usable
from fmops.datasets.records import FIELDS, RecordKind
from fmops.datasets.service import DatasetService, VersionInfo, check_name
from fmops.errors import Conflict, FmopsError, NotFound, UserError
from fmops.evals.job import service_for, settings_payload
from fmops.evals.suite import did_you_mean
from fmops.executors import make_executor
from fmops.jobs import JobCancelled, JobContext, JobService, JobStatus, job_kind
from fmops.prompts.checks import check_params
from fmops.settings import Settings
from fmops.store import Store
from fmops.store.models import Job

KIND = "datasets.infer"
CHUNK_RECORDS = 64  # records a piece of work answers (one gateway built per chunk, where it runs)
PROGRESS_S = 1.0  # the job's progress is written at most this often while a chunk is answered here
PARTS = "inference"  # artifact folder of answered chunks, until the version is written
DEFAULT_CONCURRENCY = 8
SCAN_BATCH = 5_000
Ref = Annotated[str, StringConstraints(min_length=1, max_length=210)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class InferParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Ref = Field(description="The input version: NAME, NAME@VERSION or a version id")
    output: Name = Field(description="The dataset the answers become a new version of (chat records)")
    model: Short | None = Field(None, description="A model alias of the project")
    endpoint: Short | None = Field(None, description="An endpoint (its prompt, model and guardrails)")
    prompt: Short | None = Field(None, description="NAME or NAME@LABEL (or @VERSION) of a prompt to fill")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Chat parameters: max_tokens, ...")
    seed: int | None = Field(None, description="Sent as `seed` with every call")
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=256, description="Calls in flight per chunk")
    # Never from a request: set by `submit` for a member signed in with a password (no key).
    member: str | None = Field(None, description="The member the calls are made as")


def target_spec(params: InferParams) -> dict[str, Any]:
    """The eval target the job calls (`TargetSpec`'s fields): one model, prompt or endpoint."""
    prompt, _, ref = (params.prompt or "").partition("@")
    return {
        "name": params.endpoint or params.model or prompt,
        "model": params.model,
        "prompt": prompt or None,
        "prompt_ref": ref or None,
        "endpoint": params.endpoint,
        "parameters": dict(params.parameters),
    }


def default_output(version: VersionInfo) -> str:
    """A chat dataset's answers are its next version; other kinds' go to `<name>-answers`."""
    return version.name if version.kind is RecordKind.chat else f"{version.name}-answers"[:100]


def _check_output(datasets: DatasetService, project_id: str, name: str) -> None:
    check_name(name)
    try:
        found = datasets.dataset(project_id, name)
    except NotFound:
        return  # a new dataset
    if found.kind is not RecordKind.chat:
        raise Conflict(
            f"dataset {name!r} holds {found.kind} records; the answers are chat records: choose another "
            "output name",
            param="output",
        )


def _check_records(datasets: DatasetService, version: VersionInfo) -> None:
    """Refuse a version with no records, or with records that hold nothing to answer."""
    if version.rows == 0:
        raise UserError(f"{version.ref} has no records to answer", param="dataset")
    column = FIELDS[version.kind][0]  # messages, prompt or input: what is answered
    bad, first, row = 0, 0, 0
    for batch in datasets.iter_records(version, batch_size=SCAN_BATCH, columns=[column]):
        for record in batch:
            row += 1
            if not usable(case_input(version.kind, record)[0]):
                bad += 1
                first = first or row
    if bad:
        raise UserError(
            f"{bad:,} of {version.rows:,} records of {version.ref} have no input to answer (the first is "
            f"row {first}: no user message, or empty text); fix or remove them, then try again",
            param="dataset",
        )


def check(
    store: Store,
    settings: Settings,
    datasets: DatasetService,
    project_id: str,
    params: InferParams,
) -> VersionInfo:
    """Everything a job needs, checked against the project: the input version (returned), the target,
    the parameters and the output dataset. Raises the 4xx that says what to fix."""
    version = datasets.resolve(project_id, params.dataset)
    if params.endpoint is not None and (params.model is not None or params.prompt is not None):
        raise UserError("give an endpoint alone: it has its own model and prompt", param="endpoint")
    if params.endpoint is None and params.model is None and params.prompt is None:
        raise UserError("name a model (--model) or an endpoint (--endpoint) to answer with", param="model")
    check_params(params.parameters, "parameters")
    evals = service_for(store, settings)
    if params.model is not None:
        models = evals.catalog.models(project_id)
        if params.model not in models:
            raise NotFound(
                f"no model {params.model!r} in this project{did_you_mean(params.model, models)}",
                param="model",
            )
    if params.endpoint is not None:
        known = [e.name for e in evals.targets.endpoints.list(project_id)]
        if params.endpoint not in known:
            raise NotFound(
                f"no endpoint {params.endpoint!r} in this project{did_you_mean(params.endpoint, known)}",
                param="endpoint",
            )
    resolve_target(evals.targets, project_id, target_spec(params))
    _check_output(datasets, project_id, params.output)
    return version


def submit(
    store: Store,
    settings: Settings,
    jobs: JobService,
    datasets: DatasetService,
    *,
    project_id: str,
    dataset: str,
    created_by_key_id: str | None,
    model: str | None = None,
    endpoint: str | None = None,
    prompt: str | None = None,
    output: str | None = None,
    parameters: dict[str, Any] | None = None,
    seed: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    member_user_id: str | None = None,
) -> Job:
    """Check everything and queue the job (nothing is queued on a problem). Its calls are made as the
    key `created_by_key_id`: its limits, budgets and project apply; or, for a member signed in with
    a password (`member_user_id`; `created_by_key_id` is then their session's), as that member."""
    if not created_by_key_id:
        raise UserError("batch inference calls models as a key; run it with an API key", param="key")
    version = datasets.resolve(project_id, dataset)
    params = InferParams(
        dataset=version.id,
        output=output or default_output(version),
        model=model,
        endpoint=endpoint,
        prompt=prompt,
        parameters={k: v for k, v in (parameters or {}).items() if v is not None},
        seed=seed,
        concurrency=concurrency,
        member=member_user_id,
    )
    check(store, settings, datasets, project_id, params)
    _check_records(datasets, version)
    return jobs.submit(
        KIND, params.model_dump(mode="json"), project_id=project_id, created_by_key_id=created_by_key_id
    )


# --- the job ---------------------------------------------------------------------------------------


class _Live:
    """A chunk answered in the job's process: each answer counts towards the progress (written at
    most every `PROGRESS_S`), and a stop request (cancel, shutdown) ends the chunk between calls."""

    def __init__(self, ctx: JobContext, total: int, done: int) -> None:
        self.ctx, self.total = ctx, total
        self.done = done  # records in the chunks kept so far
        self.answered = 0  # records answered in the chunk under way
        self.shown = time.monotonic()

    def chunk_done(self, done: int) -> None:
        self.done, self.answered = done, 0

    def __call__(self, answered: int) -> None:
        self.ctx.check()
        self.answered += answered
        now = time.monotonic()
        if answered and now - self.shown >= PROGRESS_S:
            self.shown = now
            count = self.done + self.answered
            self.ctx.progress(count / self.total, f"{count:,}/{self.total:,} answered")


class BatchRun:
    def __init__(self, ctx: JobContext, store: Store, params: InferParams) -> None:
        self.ctx = ctx
        self.store = store
        self.params = params
        self.settings = ctx.settings
        self.artifacts = ArtifactStore.from_settings(self.settings)
        self.datasets = DatasetService(store, self.artifacts)
        self.prefix = f"{PARTS}/{ctx.project_id}/{ctx.job_id}"

    def part(self, number: int) -> str:
        return f"{self.prefix}/part-{number:06d}.jsonl"

    def remove_parts(self) -> None:
        for key in self.artifacts.keys(self.prefix):
            self.artifacts.delete(key)

    def chunks(self, version: VersionInfo, skip: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        row = 0
        for number, batch in enumerate(self.datasets.iter_records(version, batch_size=CHUNK_RECORDS)):
            rows = list(enumerate(batch, start=row))
            row += len(batch)
            if number >= skip:
                yield rows

    def read_parts(self, count: int) -> Iterator[list[dict[str, Any]]]:
        for number in range(count):
            self.ctx.check()  # a cancel while the version is written leaves no version
            with self.artifacts.open_read(self.part(number)) as handle:
                yield [orjson.loads(line) for line in handle.read().splitlines() if line]

    def run(self) -> dict[str, Any]:
        ctx, params = self.ctx, self.params
        version = check(self.store, self.settings, self.datasets, ctx.project_id, params)
        job = JobService(self.store).get(ctx.job_id, ctx.project_id)
        if not job.created_by_key_id:
            raise FmopsError("the job has no key to call models with (submit it with an API key)")
        state = ctx.state
        parts, ok, errors = int(state.get("parts", 0)), int(state.get("ok", 0)), int(state.get("error", 0))
        if parts:
            ctx.log(f"resuming after {ok + errors:,} records ({parts} chunks answered)")
        task: dict[str, Any] = {
            "settings": settings_payload(self.settings),
            "project_id": ctx.project_id,
            "key_id": job.created_by_key_id,
            "member": params.member,
            "job_id": ctx.job_id,
            "kind": version.kind.value,
            "target": target_spec(params),
            "seed": params.seed,
            "concurrency": params.concurrency,
        }
        total = version.rows
        executor = make_executor(self.settings)
        work = ({**task, "rows": rows} for rows in self.chunks(version, parts))
        live = _Live(ctx, total, ok + errors)
        if not executor.remote:
            WATCHES[ctx.job_id] = live
        # On a cluster, `ray_tasks` chunks side by side as Ray tasks; the job's stop is watched while
        # they run, and a cancel or shutdown cancels them there. Here, one chunk at a time.
        side_by_side = self.settings.ray_tasks if executor.remote else 1
        try:
            while calls := [(t,) for t in islice(work, side_by_side)]:
                answered = executor.tasks(answer_chunk, calls, watch=ctx.check)
                for out in answered:
                    with self.artifacts.open_write(self.part(parts)) as sink:
                        sink.write(b"".join(orjson.dumps(r) + b"\n" for r in out["records"]))
                    parts, ok, errors = parts + 1, ok + int(out["ok"]), errors + int(out["error"])
                    ctx.checkpoint({"parts": parts, "ok": ok, "error": errors})
                live.chunk_done(ok + errors)
                ctx.progress((ok + errors) / total, f"{ok + errors:,}/{total:,} answered, {errors:,} failed")
            info = self.datasets.create_version(
                project_id=ctx.project_id,
                name=params.output,
                kind=RecordKind.chat,
                batches=self.read_parts(parts),
                parent_id=version.id,
                source={
                    "type": "inference",
                    "job_id": ctx.job_id,
                    "input": version.ref,
                    **{k: v for k, v in target_spec(params).items() if v and k != "name"},
                },
                counts={"in": total, "out": ok + errors, "ok": ok, "error": errors},
                created_by_key_id=job.created_by_key_id,
            )
        except JobCancelled:
            if ctx.stop_reason == "cancelled":  # shutdown or a lost job resumes from the parts
                self.remove_parts()
            raise
        except Exception:
            self.remove_parts()
            raise
        finally:
            WATCHES.pop(ctx.job_id, None)
        self.remove_parts()
        if errors:
            ctx.log(
                f"{errors:,} of {total:,} records failed; they are kept, marked in metadata.inference",
                "warning",
            )
        return {
            "input": version.ref,
            "output": info.ref,
            "version_id": info.id,
            "records": total,
            "ok": ok,
            "errors": errors,
        }


def sweep_parts(store: Store, artifacts: ArtifactStore, older_than_seconds: float = 3600.0) -> list[str]:
    """Remove the answered chunks of batch-inference jobs that will not resume (finished, or gone:
    a worker ended mid-cancel, a job given up by the reaper), older than `older_than_seconds`; the
    keys removed. A queued or running job's chunks are kept: it resumes after them."""
    by_job: dict[str, list[str]] = {}
    for key in artifacts.keys(PARTS):
        parts = key.split("/")  # inference/<project>/<job>/part-N.jsonl
        if len(parts) == 4:
            by_job.setdefault(parts[2], []).append(key)
    if not by_job:
        return []
    waiting = (JobStatus.queued, JobStatus.running)
    with store.session() as session:
        alive = set(session.scalars(select(Job.id).where(Job.id.in_(by_job), Job.status.in_(waiting))))
    cutoff = time.time() - older_than_seconds
    removed = []
    for job_id, keys in by_job.items():
        if job_id in alive:
            continue
        for key in keys:
            if artifacts.modified(key) <= cutoff:
                artifacts.delete(key)
                removed.append(key)
    return removed


@job_kind(
    KIND,
    params=InferParams,
    description="Answer every record of a dataset version through the gateway; the answers become a chat "
    "dataset version",
)
def infer(ctx: JobContext, params: InferParams) -> dict[str, Any]:
    store = Store(ctx.settings.database_url)
    try:
        return BatchRun(ctx, store, params).run()
    finally:
        store.dispose()
