"""Fine-tunes of the caller's project: start, list, show (with the loss curve and lineage), logs,
cancel, resume, export. Each is a `finetune` job; everything it needs is checked before it is queued."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from fmops.artifacts import ArtifactStore
from fmops.auth import Role
from fmops.datasets import DatasetService
from fmops.finetune.job import FinetuneParams
from fmops.finetune.service import FinetuneService
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import NO_NUL, PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.base import Page
from fmops.server.schemas.jobs import JobLogLine

router = APIRouter(prefix="/api/finetunes", tags=["finetunes"], dependencies=gate(Role.engineer))


class FinetunePublic(BaseModel):
    id: str
    status: str
    progress: float
    message: str | None = None
    error: str | None = None
    attempts: int
    base: str | None = None
    dataset: str | None = Field(None, description="The dataset version id the job trains on")
    method: str
    name: str | None = None
    resume_from: str | None = None
    model: str | None = Field(None, description="The catalog model it registered (when succeeded)")
    lineage: dict[str, Any] | None = Field(
        None, description="base, dataset version, config, metrics, artifacts"
    )
    curve: list[dict[str, Any]] | None = Field(None, description="Logged train and eval events, oldest first")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


def finetunes(platform: Platform) -> FinetuneService:
    datasets = DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))
    return FinetuneService(platform.store, platform.settings, platform.jobs, platform.catalog, datasets)


@router.post(
    "",
    response_model=FinetunePublic,
    status_code=201,
    summary="Start a fine-tune of a base model on a dataset version",
    responses=error_responses(404, 409),
)
def start(body: FinetuneParams, platform: PlatformDep, principal: PrincipalDep) -> FinetunePublic:
    service = finetunes(platform)
    job = service.start(principal.project_id, body, created_by_key_id=principal.key_id)
    return FinetunePublic.model_validate(service.get(principal.project_id, job.id, curve=False).to_dict())


@router.get("", response_model=Page[FinetunePublic], summary="Fine-tunes, newest first")
def list_finetunes(
    platform: PlatformDep,
    principal: PrincipalDep,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(
        None, max_length=32, pattern=NO_NUL, description="next_cursor of the previous page"
    ),
) -> Page[FinetunePublic]:
    views = finetunes(platform).list(principal.project_id, limit=limit, before=cursor)
    next_cursor = views[-1].job.id if len(views) == limit else None
    return Page[FinetunePublic](
        data=[FinetunePublic.model_validate(v.to_dict()) for v in views], next_cursor=next_cursor
    )


@router.get("/{job_id}", response_model=FinetunePublic, summary="A fine-tune, its loss curve and lineage")
def get_finetune(job_id: str, platform: PlatformDep, principal: PrincipalDep) -> FinetunePublic:
    return FinetunePublic.model_validate(finetunes(platform).get(principal.project_id, job_id).to_dict())


@router.get(
    "/{job_id}/curve", response_model=list[dict[str, Any]], summary="Train/eval events after a log id"
)
def curve(
    job_id: str, platform: PlatformDep, principal: PrincipalDep, after: int = Query(0, ge=0, le=2**62)
) -> list[dict[str, Any]]:
    service = finetunes(platform)
    service.get(principal.project_id, job_id, curve=False)
    return service.curve(principal.project_id, job_id, after=after)


@router.get("/{job_id}/logs", response_model=list[JobLogLine], summary="Log lines after the given id")
def logs(
    job_id: str,
    platform: PlatformDep,
    principal: PrincipalDep,
    after: int = Query(0, ge=0, le=2**62),
    limit: int = Query(1000, ge=1, le=10_000),
) -> list[JobLogLine]:
    lines = finetunes(platform).logs(principal.project_id, job_id, after=after, limit=limit)
    return [JobLogLine.model_validate(x) for x in lines]


@router.post(
    "/{job_id}/cancel",
    response_model=FinetunePublic,
    summary="Cancel a fine-tune (it checkpoints first; nothing is registered)",
    responses=error_responses(409),
)
def cancel(job_id: str, platform: PlatformDep, principal: PrincipalDep) -> FinetunePublic:
    service = finetunes(platform)
    service.cancel(principal.project_id, job_id)
    return FinetunePublic.model_validate(service.get(principal.project_id, job_id, curve=False).to_dict())


@router.post(
    "/{job_id}/resume",
    response_model=FinetunePublic,
    status_code=201,
    summary="Continue a cancelled or failed fine-tune from its newest checkpoint (a new job)",
    responses=error_responses(409),
)
def resume(job_id: str, platform: PlatformDep, principal: PrincipalDep) -> FinetunePublic:
    service = finetunes(platform)
    job = service.resume(principal.project_id, job_id, created_by_key_id=principal.key_id)
    return FinetunePublic.model_validate(service.get(principal.project_id, job.id, curve=False).to_dict())


_EXPORT_FILES = {"gguf": ".gguf", "gguf-lora": ".lora.gguf", "adapter": ".adapter.zip"}


@router.get(
    "/{job_id}/export",
    summary="Download a succeeded fine-tune's merged GGUF, GGUF LoRA or PEFT adapter (zip)",
    response_class=FileResponse,
    responses=error_responses(404, 409),
)
def export(
    job_id: str,
    platform: PlatformDep,
    principal: PrincipalDep,
    format: Literal["gguf", "gguf-lora", "adapter"] = Query(
        "gguf",
        description="The merged transformers folder is a CLI export: fmops finetune export --format merged",
    ),
) -> FileResponse:
    folder = Path(tempfile.mkdtemp(prefix="fmops-ft-export-"))
    try:
        service = finetunes(platform)
        path = service.export(principal.project_id, job_id, format, folder / format)
        lineage = service.get(principal.project_id, job_id, curve=False).lineage
        name = f"{lineage.model_alias if lineage else job_id}{_EXPORT_FILES[format]}"
        name = name.replace("/", "_").replace(":", "_")
        if path.is_dir():  # the adapter: a folder of a few files
            path = Path(shutil.make_archive(str(folder / "adapter"), "zip", root_dir=path))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        filename=name,
        media_type="application/octet-stream",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
