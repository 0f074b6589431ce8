"""Datasets of the caller's project: list, versions, rows, diffs, export, import (multipart), delete.

Everything needs an engineer key: dataset rows are production traffic and training data.

Imports over HTTP stream the upload to a temporary file (never held in memory) and are bounded by
the request body limit (`FMOPS_MAX_BODY_BYTES`, 16 MiB by default) like every other request; files
larger than that are imported on the server's machine with `fmops data import`, which has no limit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from fmops.auth import Role
from fmops.datasets import DatasetService, VersionInfo
from fmops.datasets.export import jsonl_lines, write_parquet_to
from fmops.datasets.imports import import_file
from fmops.datasets.readers import FORMATS, detect_format
from fmops.datasets.records import RecordKind
from fmops.datasets.service import NAME_PATTERN, DatasetInfo
from fmops.errors import UserError
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import NO_NUL, PrincipalDep, gate, text_query
from fmops.server.schemas.datasets import DatasetPublic, DiffPublic, Imported, Row, RowPage, VersionPublic

router = APIRouter(prefix="/api/datasets", tags=["datasets"], dependencies=gate(Role.engineer))
Name = PathParam(pattern=NAME_PATTERN, description="The dataset's name")
VersionRef = PathParam(pattern=r"^([0-9]{1,9}|latest)$", description="A version number, or `latest`")
_COPY_CHUNK = 1024 * 1024


def datasets(platform: Platform) -> DatasetService:
    return platform.datasets


def version_public(version: VersionInfo) -> VersionPublic:
    return VersionPublic(
        id=version.id,
        dataset_id=version.dataset_id,
        name=version.name,
        version=version.version,
        ref=version.ref,
        kind=version.kind.value,
        rows=version.rows,
        content_hash=version.content_hash,
        parent_id=version.parent_id,
        source=version.source,
        recipe=version.recipe,
        step=version.step,
        counts=version.counts,
        report=version.report,
        size_bytes=version.size_bytes,
        created_by_key_id=version.created_by_key_id,
        created_at=version.created_at,
    )


def _dataset_public(info: DatasetInfo) -> DatasetPublic:
    return DatasetPublic(
        id=info.id,
        name=info.name,
        kind=info.kind.value,
        description=info.description,
        latest_version=info.latest_version,
        rows=info.rows,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


@router.get("", response_model=list[DatasetPublic], summary="Datasets, by name")
def list_datasets(platform: PlatformDep, principal: PrincipalDep) -> list[DatasetPublic]:
    return [_dataset_public(d) for d in datasets(platform).list_datasets(principal.project_id)]


@router.post(
    "/import",
    response_model=Imported,
    status_code=201,
    summary="Import a file (JSONL, CSV or Parquet; multipart field `file`) as a dataset's next version",
    responses={200: {"model": Imported, "description": "Same records and source as the newest version"}},
)
def import_dataset(
    platform: PlatformDep,
    principal: PrincipalDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The file; its name's extension tells the format")],
    name: Annotated[str, Form(pattern=NAME_PATTERN, description="The dataset (created on first import)")],
    kind: Annotated[RecordKind | None, Form(description="Default: from the records' shape")] = None,
    format: Annotated[
        Literal["jsonl", "csv", "parquet"] | None, Form(description="Default: from the file name")
    ] = None,
    on_error: Annotated[Literal["fail", "skip"], Form(description="skip: leave bad rows out")] = "fail",
    description: Annotated[str | None, Form(max_length=2000, pattern=NO_NUL)] = None,
) -> Imported:
    upload_name = Path(file.filename or "upload").name
    fmt = format or detect_format(Path(upload_name))
    if fmt not in FORMATS or fmt == "hf":
        raise UserError("a saved HF dataset is a folder: import it with `fmops data import`", param="file")
    # The upload is already on disk (spooled) or in a small buffer; copy it to a file of ours by
    # chunks, so the readers get a real path whatever the size.
    with tempfile.TemporaryDirectory(prefix="fmops-import-") as folder:
        path = Path(folder) / f"upload.{fmt}"
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, _COPY_CHUNK)
        result = import_file(
            datasets(platform),
            project_id=principal.project_id,
            path=path,
            name=name,
            kind=kind,
            fmt=fmt,
            on_error=on_error,
            created_by_key_id=principal.key_id,
            file_name=upload_name,
            description=description,
        )
    if result.version.reused:
        response.status_code = 200
    return Imported(
        version=version_public(result.version),
        created=not result.version.reused,
        format=result.format,
        shape=result.shape.value,
        detection=result.detection,
        rows_read=result.rows_read,
        skipped=result.skipped,
        problems=result.problems,
    )


@router.get("/{name}", response_model=DatasetPublic, summary="A dataset and its newest version's size")
def get_dataset(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> DatasetPublic:
    return _dataset_public(datasets(platform).dataset(principal.project_id, name))


@router.delete(
    "/{name}", response_model=DatasetPublic, summary="Delete a dataset with every version and file"
)
def delete_dataset(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> DatasetPublic:
    return _dataset_public(datasets(platform).delete_dataset(principal.project_id, name))


@router.get("/{name}/versions", response_model=list[VersionPublic], summary="Every version, newest first")
def list_versions(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> list[VersionPublic]:
    return [version_public(v) for v in datasets(platform).list_versions(principal.project_id, name)]


def _resolve(
    platform: Platform, project_id: str, name: str, version: str
) -> tuple[DatasetService, VersionInfo]:
    service = datasets(platform)
    return service, service.resolve(project_id, f"{name}@{version}")


@router.get(
    "/{name}/versions/{version}",
    response_model=VersionPublic,
    summary="One version: kind, rows, hash, lineage (parent, source, recipe, step), counts, report",
)
def get_version(
    platform: PlatformDep, principal: PrincipalDep, name: str = Name, version: str = VersionRef
) -> VersionPublic:
    return version_public(_resolve(platform, principal.project_id, name, version)[1])


@router.get(
    "/{name}/versions/{version}/lineage",
    response_model=list[VersionPublic],
    summary="The version, then its parent, and so on to the root",
)
def get_lineage(
    platform: PlatformDep, principal: PrincipalDep, name: str = Name, version: str = VersionRef
) -> list[VersionPublic]:
    service, found = _resolve(platform, principal.project_id, name, version)
    return [version_public(v) for v in service.lineage(principal.project_id, found.id)]


@router.get(
    "/{name}/versions/{version}/rows",
    response_model=RowPage,
    summary="A page of records (only the row groups holding it are read); `search` filters by text",
)
def get_rows(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    version: str = VersionRef,
    offset: int = Query(0, ge=0, le=2**40),
    limit: int = Query(50, ge=1, le=1000),
    search: str | None = text_query(500, "Only records holding this text (case-insensitive)"),
) -> RowPage:
    service, found = _resolve(platform, principal.project_id, name, version)
    page = service.page(found, offset, limit, search)
    return RowPage(
        offset=page.offset,
        limit=page.limit,
        total=page.total,
        has_more=page.has_more,
        rows=[Row(row=i, record=r) for i, r in page.rows],
    )


@router.get(
    "/{name}/versions/{version}/diff",
    response_model=DiffPublic,
    summary="Records added and removed from `other` (the old side) to this version, by record hash",
)
def get_diff(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    version: str = VersionRef,
    other: str = Query(
        ..., min_length=1, max_length=200, pattern=NO_NUL, description="A version number, NAME@VERSION or id"
    ),
    examples: int = Query(5, ge=0, le=50),
) -> DiffPublic:
    service, found = _resolve(platform, principal.project_id, name, version)
    old = f"{name}@{other}" if other.isdigit() or other == "latest" else other
    diff = service.diff(principal.project_id, old, found.id, examples=examples)
    return DiffPublic(
        a=version_public(diff.a),
        b=version_public(diff.b),
        added=diff.added,
        removed=diff.removed,
        unchanged=diff.unchanged,
        added_examples=diff.added_examples,
        removed_examples=diff.removed_examples,
    )


@router.get(
    "/{name}/versions/{version}/export",
    summary="The version as JSONL (TRL / OpenAI fine-tuning shape) or Parquet, streamed",
    responses={
        200: {
            "description": "The file",
            "content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}},
        }
    },
)
def export_version(
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = Name,
    version: str = VersionRef,
    format: Literal["jsonl", "parquet"] = Query("jsonl"),
) -> StreamingResponse:
    service, found = _resolve(platform, principal.project_id, name, version)
    filename = f"{found.name}-{found.version}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "jsonl":
        return StreamingResponse(
            jsonl_lines(service, found), media_type="application/x-ndjson", headers=headers
        )
    # Parquet needs a seekable sink: written to a temporary file, streamed, then removed.
    folder = tempfile.mkdtemp(prefix="fmops-export-")
    path = Path(folder) / filename
    try:
        write_parquet_to(service, found, str(path))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(_COPY_CHUNK):
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type="application/vnd.apache.parquet",
        headers=headers,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
