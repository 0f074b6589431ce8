"""Fine-tunes of a project, as the CLI, the API and the console see them: start (every input checked
before anything is queued), list, show with the loss curve and lineage, logs, cancel, resume a stopped one.

A fine-tune is a `finetune` job; its log holds one JSON line per logging step (the curve), and a
succeeded one has a row in `finetunes` (the lineage of the model it registered).
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.errors import Conflict, UserError
from fmops.finetune import export as exports
from fmops.finetune.base_model import prepare_base
from fmops.finetune.checkpoints import last_checkpoint
from fmops.finetune.config import FinetuneConfig
from fmops.finetune.data import KIND_FOR_METHOD, wrong_kind
from fmops.finetune.job import KIND, FinetuneParams, bases_dir, model_alias, resolve_base, run_dir
from fmops.finetune.stored import local_output
from fmops.jobs import JobService, JobStatus
from fmops.settings import Settings
from fmops.store import Store
from fmops.store.models import Finetune, Job, JobLog

__all__ = ["FinetuneService", "FinetuneView"]


@dataclass
class FinetuneView:
    job: Job
    lineage: Finetune | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        job, row = self.job, self.lineage
        params = job.params or {}
        out: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "error": job.error,
            "attempts": job.attempts,
            "base": params.get("base"),
            "dataset": params.get("dataset"),
            "method": params.get("method", "sft"),
            "name": params.get("name"),
            "resume_from": params.get("resume_from"),
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "model": row.model_alias if row is not None else None,
        }
        if row is not None:
            out["lineage"] = {
                "model": row.model_alias,
                "model_id": row.model_id,
                "base": row.base,
                "dataset_version_id": row.dataset_version_id,
                "dataset": row.dataset_ref,
                "config": row.config,
                "metrics": row.metrics,
                "artifacts": row.artifacts,
            }
        if self.curve:
            out["curve"] = self.curve
        return out


class FinetuneService:
    def __init__(
        self, store: Store, settings: Settings, jobs: JobService, catalog: Catalog, datasets: DatasetService
    ) -> None:
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.catalog = catalog
        self.datasets = datasets

    def start(self, project_id: str, params: FinetuneParams, *, created_by_key_id: str | None = None) -> Job:
        """Check everything a worker would refuse, pin the dataset version, then queue the job."""
        config = FinetuneConfig.from_dict(params.config, params.method)
        version = self.datasets.resolve(project_id, params.dataset)
        if str(version.kind) != KIND_FOR_METHOD[config.method]:
            raise UserError(wrong_kind(config.method, str(version.kind), version.ref), param="dataset")
        if version.rows < 2:
            raise UserError(
                f"{version.ref} has {version.rows} records; fine-tuning needs more", param="dataset"
            )
        resolve_base(self.catalog, project_id, params.base)
        if params.name and params.name in self.catalog.models(project_id):
            raise Conflict(f"model {params.name!r} already exists; choose another name", param="name")
        # The version id, not "latest": a newer version made while this job waits does not change it.
        pinned = params.model_copy(update={"dataset": version.id})
        return self.jobs.submit(
            KIND, pinned.model_dump(mode="json"), project_id=project_id, created_by_key_id=created_by_key_id
        )

    def _lineage(self, job_ids: list[str]) -> dict[str, Finetune]:
        if not job_ids:
            return {}
        with self.store.session() as session:
            rows = session.scalars(select(Finetune).where(Finetune.job_id.in_(job_ids)))
            return {row.job_id: row for row in rows}

    def list(self, project_id: str, *, limit: int = 50, before: str | None = None) -> list[FinetuneView]:
        jobs = self.jobs.find(project_id=project_id, kind=KIND, limit=limit, before=before)
        rows = self._lineage([j.id for j in jobs])
        return [FinetuneView(job, rows.get(job.id)) for job in jobs]

    def get(self, project_id: str, job_id: str, *, curve: bool = True) -> FinetuneView:
        job = self.jobs.get(job_id, project_id)
        if job.kind != KIND:
            raise UserError(f"job {job_id} is a {job.kind} job, not a fine-tune", param="job_id")
        view = FinetuneView(job, self._lineage([job_id]).get(job_id))
        if curve:
            view.curve = self.curve(project_id, job_id)
        return view

    def curve(self, project_id: str, job_id: str, *, after: int = 0) -> builtins.list[dict[str, Any]]:
        """The progress events logged so far (train loss, eval loss, tokens/s, ETA), oldest first."""
        events = []
        for line in self.jobs.logs(job_id, project_id, after=after, limit=100_000):
            if line.line.startswith('{"event": "train"') or line.line.startswith('{"event": "eval"'):
                events.append(json.loads(line.line))
        return events

    def logs(
        self, project_id: str, job_id: str, *, after: int = 0, limit: int = 1000
    ) -> builtins.list[JobLog]:
        """The job's log lines after the line id `after`, oldest first (a 404 for another kind of job)."""
        self.get(project_id, job_id, curve=False)
        return self.jobs.logs(job_id, project_id, after=after, limit=limit)

    def log_tail(self, project_id: str, job_id: str, *, lines: int = 50) -> builtins.list[JobLog]:
        """The newest `lines` log lines, oldest first: what a page shows of a running job."""
        self.get(project_id, job_id, curve=False)
        with self.store.session() as session:
            newest = session.scalars(
                select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id.desc()).limit(lines)
            )
            return builtins.list(reversed(builtins.list(newest)))

    def cancel(self, project_id: str, job_id: str) -> Job:
        """A queued fine-tune stops at once; a running one checkpoints, then ends as cancelled (a 409 for
        one already finished). Nothing is registered either way."""
        self.get(project_id, job_id, curve=False)
        return self.jobs.cancel(job_id, project_id)

    def resume(self, project_id: str, job_id: str, *, created_by_key_id: str | None = None) -> Job:
        """A new job that continues a failed or cancelled fine-tune from its newest checkpoint."""
        view = self.get(project_id, job_id, curve=False)
        status = JobStatus(view.job.status)
        if status in (JobStatus.queued, JobStatus.running):
            raise Conflict(f"fine-tune {job_id} is {status}; it resumes by itself if its worker stops")
        if status == JobStatus.succeeded:
            raise Conflict(f"fine-tune {job_id} already succeeded; start a new one to train again")
        params = FinetuneParams.model_validate(view.job.params)
        origin = params.resume_from or job_id
        if last_checkpoint(run_dir(self.settings, origin)) is None:
            raise Conflict(f"fine-tune {job_id} saved no checkpoint to resume from; start it again instead")
        if params.name is None:  # keep the name the stopped job would have registered
            params = params.model_copy(update={"name": model_alias(params, job_id)})
        resumed = params.model_copy(update={"resume_from": origin})
        return self.jobs.submit(
            KIND, resumed.model_dump(mode="json"), project_id=project_id, created_by_key_id=created_by_key_id
        )

    def export(self, project_id: str, job_id: str, what: str, out: Path) -> Path:
        """Write a succeeded fine-tune's `what` (one of EXPORT_FORMATS) to `out`; returns the path."""
        if what not in exports.EXPORT_FORMATS:
            raise UserError(f"format must be one of {', '.join(exports.EXPORT_FORMATS)}", param="format")
        row = self.get(project_id, job_id, curve=False).lineage
        if row is None:
            raise Conflict(f"fine-tune {job_id} made no model (it has not succeeded); nothing to export")
        artifacts = row.artifacts or {}
        # The run's files where they are, else copies from the artifact store (another machine trained).
        adapter = self._local(artifacts, "adapter") or Path(artifacts["adapter"])
        if what == "adapter":
            return exports.export_adapter(adapter, out)
        if what == "merged":
            source = resolve_base(self.catalog, project_id, row.base)
            weights = prepare_base(source, bases_dir(self.settings))
            return exports.export_merged(weights, adapter, out)
        if "base_gguf" not in artifacts:
            raise Conflict(f"the base of fine-tune {job_id} has no GGUF, so neither has the fine-tune")
        base_gguf = Path(artifacts["base_gguf"])
        if what == "gguf-lora":
            return exports.export_gguf(adapter, base_gguf, out, self._local(artifacts, "gguf_lora"))
        return exports.export_merged_gguf(adapter, base_gguf, out, self._local(artifacts, "gguf"))

    def _local(self, artifacts: dict[str, Any], name: str) -> Path | None:
        return local_output(self.settings, self.datasets.artifacts, artifacts, name)
