"""Annotation queues in the console: engineers make, follow and export them (`/console/annotation`);
annotators work through theirs one item at a time (`/console/annotate`).

The annotator's page is a plain form (accept, correct, skip; a radio group per label field) that
works without JavaScript; `annotate.js` adds the keyboard: a accept, c correct, s skip, 1-9 label
values. Each decision posts, and the answer is a 303 to the next item.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.annotation import AnnotationService, DecisionCreate, QueueCreate, QueueView
from fmops.annotation.agreement import Agreement
from fmops.auth import Principal, Role
from fmops.datasets.from_traces import answer_message, chat_example, filter_json, parse_filter
from fmops.errors import UserError
from fmops.platform import Platform, PlatformDep
from fmops.store import utcnow
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go
from fmops.web.pages import console_page
from fmops.web.templating import render

QUEUES = console_page("/console/annotation", "Annotation queues", "Data", role=Role.engineer, order=30)
WORK = console_page("/console/annotate", "Annotate", "Data", role=Role.annotator, order=40)
queues = APIRouter(prefix=QUEUES.path, dependencies=web_gate(Role.engineer))
work = APIRouter(prefix=WORK.path, dependencies=web_gate(Role.annotator))
router = APIRouter(include_in_schema=False)
QueueRef = Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ItemId = Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")

FILTER_FIELDS = ("model", "endpoint", "variant", "user", "feedback", "score_name", "min_score")
RANGES = {
    "": "any time",
    "1": "last hour",
    "24": "last 24 hours",
    "168": "last 7 days",
    "720": "last 30 days",
}
MAX_KEYS = 9


def _service(platform: Platform) -> AnnotationService:
    datasets = platform.datasets
    return AnnotationService(platform.store, platform.tracer, datasets)


def _fields(form: dict[str, str]) -> list[dict[str, Any]]:
    """Label fields from the form's lines, one per field: `topic = billing, shipping, other`."""
    fields = []
    for line in form.get("labels", "").splitlines():
        if not line.strip():
            continue
        name, found, values = line.partition("=")
        if not found:
            raise UserError(f"label line {line.strip()[:60]!r}: write NAME = VALUE1, VALUE2", param="labels")
        fields.append({"name": name.strip(), "values": [v.strip() for v in values.split(",") if v.strip()]})
    return fields


def _number(form: dict[str, str], name: str, kind: type[int] | type[float], default: str) -> int | float:
    text = form.get(name, "").strip() or default
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"{name.replace('_', ' ')} must be a number, not {text[:40]!r}", param=name) from None


def queue_from_form(form: dict[str, str]) -> QueueCreate:
    """The form's strings as the API's queue body; a schema error becomes one readable 400."""
    filters: dict[str, Any] = {k: form[k].strip() for k in FILTER_FIELDS if form.get(k, "").strip()}
    prompt = form.get("prompt", "").strip()
    if prompt:
        name, _, version = prompt.partition(":")
        filters["prompt_name"] = name
        if version:
            filters["prompt_version"] = version
    if form.get("tags", "").strip():
        filters["tags"] = form["tags"].split(",")  # comma-separated, all must match
    hours = form.get("range", "")
    if hours and hours in RANGES:
        filters["start"] = (utcnow() - timedelta(hours=int(hours))).isoformat()
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip() or None,
        "filter": filter_json(parse_filter(filters)),  # the trace search's types and checks
        "sampling_rate": _number(form, "sampling_rate", float, "1"),
        "max_items": _number(form, "max_items", int, "1000"),
        "overlap": _number(form, "overlap", int, "1"),
        "label_schema": _fields(form),
        "annotators": [a.strip() for a in form.get("annotators", "").split(",") if a.strip()],
        "dataset": form.get("dataset", "").strip() or None,
    }
    try:
        return QueueCreate.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = " ".join(str(part) for part in error["loc"]).replace("_", " ") or "queue"
        raise UserError(
            f"{where}: {error['msg']}", param=str(error["loc"][0]) if error["loc"] else None
        ) from None


def decision_from_form(form: dict[str, str]) -> DecisionCreate:
    labels = {k.removeprefix("label:"): v for k, v in form.items() if k.startswith("label:") and v}
    action = form.get("action", "")
    corrected = form.get("corrected_output", "").strip() if action == "correct" else None
    try:
        return DecisionCreate.model_validate(
            {"action": action, "corrected_output": corrected, "labels": labels}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = " ".join(str(part) for part in error["loc"]) or "decision"
        raise UserError(f"{where}: {error['msg']}".replace("Value error, ", ""), param="action") from None


async def _form(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _agreement_rows(agreement: list[Agreement]) -> list[Agreement]:
    return [a for a in agreement if a.pairs]


# --- engineers: the queues of the project -------------------------------------------------------


def _list_context(platform: Platform, principal: Principal) -> dict[str, Any]:
    return {"views": _service(platform).queues(principal), "ranges": RANGES}


@queues.get("")
async def queue_list(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    context = await run_in_threadpool(_list_context, platform, principal)
    return render(request, "console/annotation/queues.html", {**context, "message": None})


@queues.post("")
async def create_queue(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    body = queue_from_form(await _form(request))
    view = await run_in_threadpool(_service(platform).create, principal, body)
    return go(request, f"{QUEUES.path}/{view.queue.id}")


def _detail_context(platform: Platform, principal: Principal, ref: str) -> dict[str, Any]:
    service = _service(platform)
    view = service.view(principal, ref)
    return {"view": view, "agreement": service.agreement(view.queue), "exported": None}


@queues.get("/{queue}")
async def queue_detail(
    request: Request, platform: PlatformDep, principal: WebPrincipal, queue: str = QueueRef
) -> Response:
    context = await run_in_threadpool(_detail_context, platform, principal, queue)
    return render(request, "console/annotation/detail.html", context)


@queues.post("/{queue}/export")
async def export_queue(
    request: Request, platform: PlatformDep, principal: WebPrincipal, queue: str = QueueRef
) -> Response:
    dataset = (await _form(request)).get("dataset", "").strip() or None
    version = await run_in_threadpool(_service(platform).export, principal, queue, dataset)
    context = await run_in_threadpool(_detail_context, platform, principal, queue)
    context["exported"] = version
    return render(request, "console/annotation/detail.html", context, status=201)


@queues.post("/{queue}/delete")
async def delete_queue(
    request: Request, platform: PlatformDep, principal: WebPrincipal, queue: str = QueueRef
) -> Response:
    await run_in_threadpool(_service(platform).delete, principal, queue)
    return go(request, QUEUES.path)


# --- annotators: one item at a time -------------------------------------------------------------


@work.get("")
async def my_queues(request: Request, platform: PlatformDep, principal: WebPrincipal) -> Response:
    views = await run_in_threadpool(_service(platform).queues, principal)
    return render(request, "console/annotation/mine.html", {"views": views})


def keyed_values(view: QueueView) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Each label field with its values and the number key that picks each (1-9 across all fields)."""
    out, key = [], 0
    for field in view.fields:
        values = []
        for value in field.values:
            key += 1
            values.append((value, str(key) if key <= MAX_KEYS else None))
        out.append((field.name, values))
    return out


def _work_context(platform: Platform, principal: Principal, ref: str) -> dict[str, Any]:
    service = _service(platform)
    view = service.view(principal, ref)
    item = service.next_item(principal, ref)
    example = chat_example(item.input, item.output) if item is not None else None
    return {
        "view": view,
        "item": item,
        "messages": example.messages if example else [],
        "answer": (example.answer if example else answer_message(item.output) if item else None),
        "fields": keyed_values(view),
        "agreement": _agreement_rows(service.agreement(view.queue)),
        "error": None,
        "chosen": {},
    }


@work.get("/{queue}")
async def work_page(
    request: Request, platform: PlatformDep, principal: WebPrincipal, queue: str = QueueRef
) -> Response:
    context = await run_in_threadpool(_work_context, platform, principal, queue)
    return render(request, "console/annotation/work.html", context)


@work.post("/{queue}/items/{item_id}")
async def decide(
    request: Request,
    platform: PlatformDep,
    principal: WebPrincipal,
    queue: str = QueueRef,
    item_id: str = ItemId,
) -> Response:
    form = await _form(request)
    service = _service(platform)
    try:
        body = decision_from_form(form)
        await run_in_threadpool(service.decide, principal, queue, item_id, body)
    except UserError as exc:
        if exc.status_code != 400:
            raise
        # The same item again, with what they chose and what to fix.
        context = await run_in_threadpool(_work_context, platform, principal, queue)
        context["error"] = exc.message
        context["chosen"] = {k.removeprefix("label:"): v for k, v in form.items() if k.startswith("label:")}
        return render(request, "console/annotation/work.html", context, status=400)
    return go(request, f"{WORK.path}/{queue}")


router.include_router(queues)
router.include_router(work)
