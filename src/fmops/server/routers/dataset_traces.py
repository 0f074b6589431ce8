"""Dataset versions from production traffic: the trace search's filters, corrections, preference pairs."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.auth import Role
from fmops.datasets import VersionInfo
from fmops.datasets.from_traces import TraceDatasets, parse_filter
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.schemas.dataset_traces import DatasetVersionPublic, FromTracesCreate

router = APIRouter(prefix="/api/datasets", tags=["datasets"], dependencies=gate(Role.engineer))


def trace_datasets(platform: Platform) -> TraceDatasets:
    datasets = platform.datasets
    return TraceDatasets(platform.store, datasets)


def version_public(version: VersionInfo) -> DatasetVersionPublic:
    return DatasetVersionPublic(
        id=version.id,
        name=version.name,
        version=version.version,
        ref=version.ref,
        kind=str(version.kind),
        rows=version.rows,
        content_hash=version.content_hash,
        parent_id=version.parent_id,
        source=version.source,
        counts=version.counts,
        created_at=version.created_at,
    )


@router.post(
    "/from-traces",
    response_model=DatasetVersionPublic,
    status_code=201,
    summary="A dataset version from the traces a filter matches (chat examples or preference pairs)",
)
def from_traces(
    body: FromTracesCreate, platform: PlatformDep, principal: PrincipalDep
) -> DatasetVersionPublic:
    version, _ = trace_datasets(platform).build(
        project_id=principal.project_id,
        name=body.name,
        filters=parse_filter(body.filter),
        corrected_only=body.corrected_only,
        preference=body.preference,
        append=body.append,
        created_by_key_id=principal.key_id,
    )
    return version_public(version)
