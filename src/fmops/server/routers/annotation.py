"""Annotation queues: engineers make and export them, annotators work through their items."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from fmops.annotation import AnnotationService, QueueView
from fmops.auth import Principal, Role
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.routers.dataset_traces import version_public
from fmops.server.schemas.annotation import (
    AgreementPublic,
    DecisionCreate,
    DecisionPublic,
    ExportCreate,
    ItemPublic,
    NextItem,
    ProgressPublic,
    QueueCreate,
    QueueDetail,
    QueuePublic,
)
from fmops.server.schemas.dataset_traces import DatasetVersionPublic

# Gates per route, not on the router: a route's one gate names the role it needs in its 403.
router = APIRouter(prefix="/api/annotation-queues", tags=["annotation"])
ANNOTATOR, ENGINEER = gate(Role.annotator), gate(Role.engineer)
QueueRef = Path(
    min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Id or name"
)
ItemId = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")


def annotation_service(platform: Platform) -> AnnotationService:
    datasets = platform.datasets
    return AnnotationService(platform.store, platform.tracer, datasets)


def _public(view: QueueView) -> QueuePublic:
    q = view.queue
    return QueuePublic(
        id=q.id,
        name=q.name,
        description=q.description,
        filter=q.filter,
        sampling_rate=q.sampling_rate,
        label_schema=view.fields,
        overlap=q.overlap,
        annotators=q.annotators,
        dataset=q.dataset,
        created_by=q.created_by,
        created_at=q.created_at,
        progress=ProgressPublic.model_validate(view.progress),
    )


def _detail(service: AnnotationService, principal: Principal, ref: str) -> QueueDetail:
    view = service.view(principal, ref)
    agreement = [AgreementPublic.model_validate(a) for a in service.agreement(view.queue)]
    return QueueDetail(**_public(view).model_dump(), agreement=agreement)


@router.post(
    "",
    response_model=QueueDetail,
    status_code=201,
    summary="Make a queue from a trace filter, a sampling rate and a label schema",
    dependencies=ENGINEER,
    responses=error_responses(409),
)
def create_queue(body: QueueCreate, platform: PlatformDep, principal: PrincipalDep) -> QueueDetail:
    service = annotation_service(platform)
    view = service.create(principal, body)
    return _detail(service, principal, view.queue.id)


@router.get(
    "",
    response_model=list[QueuePublic],
    summary="Queues you may see, newest first, with progress",
    dependencies=ANNOTATOR,
)
def list_queues(platform: PlatformDep, principal: PrincipalDep) -> list[QueuePublic]:
    return [_public(v) for v in annotation_service(platform).queues(principal)]


@router.get(
    "/{queue}",
    response_model=QueueDetail,
    summary="A queue with its progress and agreement",
    dependencies=ANNOTATOR,
)
def get_queue(platform: PlatformDep, principal: PrincipalDep, queue: str = QueueRef) -> QueueDetail:
    return _detail(annotation_service(platform), principal, queue)


@router.delete("/{queue}", status_code=204, summary="Delete a queue and its items", dependencies=ENGINEER)
def delete_queue(platform: PlatformDep, principal: PrincipalDep, queue: str = QueueRef) -> Response:
    annotation_service(platform).delete(principal, queue)
    return Response(status_code=204)


@router.get(
    "/{queue}/next",
    response_model=NextItem,
    summary="The next item for you to decide",
    dependencies=ANNOTATOR,
)
def next_item(platform: PlatformDep, principal: PrincipalDep, queue: str = QueueRef) -> NextItem:
    service = annotation_service(platform)
    item = service.next_item(principal, queue)
    progress = service.view(principal, queue).progress
    return NextItem(
        item=ItemPublic.model_validate(item) if item is not None else None,
        progress=ProgressPublic.model_validate(progress),
    )


@router.get(
    "/{queue}/items/{item_id}",
    response_model=ItemPublic,
    summary="One item of a queue",
    dependencies=ANNOTATOR,
)
def get_item(
    platform: PlatformDep, principal: PrincipalDep, queue: str = QueueRef, item_id: str = ItemId
) -> ItemPublic:
    return ItemPublic.model_validate(annotation_service(platform).item(principal, queue, item_id))


@router.post(
    "/{queue}/items/{item_id}/decisions",
    response_model=DecisionPublic,
    status_code=201,
    summary="Accept, correct (with the answer it should have been), label or skip an item",
    dependencies=ANNOTATOR,
    responses=error_responses(409),
)
def decide(
    body: DecisionCreate,
    platform: PlatformDep,
    principal: PrincipalDep,
    queue: str = QueueRef,
    item_id: str = ItemId,
) -> DecisionPublic:
    decision = annotation_service(platform).decide(principal, queue, item_id, body)
    return DecisionPublic.model_validate(decision)


@router.post(
    "/{queue}/export",
    response_model=DatasetVersionPublic,
    status_code=201,
    summary="A dataset version of the decided items (corrected answers, labels in metadata)",
    dependencies=ENGINEER,
)
def export_queue(
    platform: PlatformDep, principal: PrincipalDep, body: ExportCreate | None = None, queue: str = QueueRef
) -> DatasetVersionPublic:
    version = annotation_service(platform).export(principal, queue, body.dataset if body else None)
    return version_public(version)
