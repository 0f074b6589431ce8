"""`/console/finetunes`: the project's fine-tunes, and the form that starts one from a dataset version.

The form calls the same `FinetuneService.start` as `fmops finetune run` and `POST /api/finetunes`
(config, dataset kind, base and name checked before anything is queued); a refusal comes back as the
form again with the message beside it and the service's 4xx status. A fine-tune's own page (curves,
log, cancel, resume, lineage) is `console_finetunes_job`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.artifacts import ArtifactStore
from fmops.auth import Principal, Role
from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.datasets import DatasetService
from fmops.errors import NotFound, UserError
from fmops.finetune.config import Method
from fmops.finetune.job import FinetuneParams
from fmops.finetune.service import FinetuneService, FinetuneView
from fmops.jobs import JobStatus
from fmops.platform import Platform, PlatformDep
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import console_page
from fmops.web.routers.build_forms import invalid
from fmops.web.routers.console_finetunes_form import (
    MAX_CONFIG,
    METHOD_FOR_KIND,
    base_choices,
    dataset_choices,
    defaults_yaml,
    settings_from_yaml,
)
from fmops.web.templating import render

PAGE = console_page("/console/finetunes", "Fine-tuning", "Data", role=Role.engineer, order=50)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
PAGE_SIZE = 50
ACTIVE = (JobStatus.queued, JobStatus.running)
METHODS = tuple(m.value for m in Method)


def datasets(platform: Platform) -> DatasetService:
    return DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))


def finetunes(platform: Platform) -> FinetuneService:
    return FinetuneService(
        platform.store, platform.settings, platform.jobs, platform.catalog, datasets(platform)
    )


def dataset_ref(service: DatasetService, project_id: str, view: FinetuneView, known: dict[str, str]) -> str:
    """`name@version` of the version a fine-tune trains on (its params hold the pinned version id)."""
    if view.lineage is not None:
        return view.lineage.dataset_ref
    pinned = str((view.job.params or {}).get("dataset") or "")
    if pinned and pinned not in known:
        try:
            known[pinned] = service.get(project_id, pinned).ref
        except NotFound:  # a name given before pinning existed, or a deleted dataset
            known[pinned] = pinned
    return known.get(pinned, pinned)


def _listing(platform: Platform, me: Principal, before: str | None) -> dict[str, Any]:
    views = finetunes(platform).list(me.project_id, limit=PAGE_SIZE, before=before)
    service = datasets(platform)
    known: dict[str, str] = {}  # version id -> name@version, looked up once per page
    rows = [(v, v.to_dict(), dataset_ref(service, me.project_id, v, known)) for v in views]
    return {
        "rows": rows,
        "active": any(JobStatus(v.job.status) in ACTIVE for v in views),
        "older": views[-1].job.id if len(views) == PAGE_SIZE else None,
        "before": before,
    }


Cursor = Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("")
async def finetunes_page(
    request: Request, platform: PlatformDep, me: WebPrincipal, before: Cursor = None
) -> Response:
    context = await run_in_threadpool(_listing, platform, me, before)
    if is_htmx(request) and not request.headers.get("hx-history-restore-request"):
        return render(request, "console/finetunes/_table.html", context)  # the table's own refresh
    return render(request, "console/finetunes/index.html", context)


# --- the form -----------------------------------------------------------------------------------


def _form(platform: Platform, me: Principal, values: dict[str, str]) -> dict[str, Any]:
    choices = dataset_choices(datasets(platform), me.project_id)
    method = Method(values["method"]) if values.get("method") in METHODS else None
    chosen = values.get("dataset", "")
    if not chosen and choices:  # the newest trainable version: most likely the one just made
        chosen = max((c.versions[0] for c in choices), key=lambda v: v.created_at).ref
    if method is None:  # the method the chosen dataset's kind trains with
        kind = next((c.kind for c in choices for v in c.versions if chosen in (v.ref, v.id)), "chat")
        method = METHOD_FOR_KIND.get(kind, Method.sft)
    return {
        "choices": choices,
        "bases": base_choices(platform.catalog, me.project_id, platform.settings.home / "models"),
        "methods": METHODS,
        "values": {
            "dataset": chosen,
            "base": values.get("base") or DEFAULT_CHAT_MODEL,
            "name": values.get("name", ""),
            "method": str(method),
            "config": values["config"] if "config" in values else defaults_yaml(method),
        },
        "dataset_listed": any(chosen in (v.ref, v.id) for c in choices for v in c.versions),
        "shown_method": values.get("shown_method") or str(method),
        "max_config": MAX_CONFIG,
        "error": None,
        "error_param": "",
        "note": "",
    }


Text = Annotated[str, Query(max_length=200)]


def _again(platform: Platform, me: Principal, job_id: str) -> dict[str, str]:
    """The form's values to train again as an earlier fine-tune did (a new name: names are unique)."""
    view = finetunes(platform).get(me.project_id, job_id, curve=False)
    params = view.job.params or {}
    method = Method(params.get("method") or Method.sft)
    return {
        "dataset": dataset_ref(datasets(platform), me.project_id, view, {}),
        "base": str(params.get("base") or ""),
        "method": str(method),
        "config": defaults_yaml(method, params.get("config") or {}),
    }


JobRef = Annotated[str, Query(alias="from", max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("/new")
async def new_page(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    dataset: Text = "",
    base: Text = "",
    method: Annotated[str, Query(max_length=10)] = "",
    from_job: JobRef = "",
) -> Response:
    """`?dataset=&base=&method=` preset those fields; `?from=<job id>` everything an earlier job used."""
    values = {"dataset": dataset, "base": base, "method": method}
    if from_job:
        values = await run_in_threadpool(_again, platform, me, from_job)
    context = await run_in_threadpool(_form, platform, me, {k: v for k, v in values.items() if v})
    return render(request, "console/finetunes/new.html", context)


@router.get("/new/config")
async def config_fields(
    request: Request,
    platform: PlatformDep,
    me: WebPrincipal,
    dataset: Text = "",
    method: Annotated[str, Query(max_length=10)] = "",
    shown_method: Annotated[str, Query(max_length=10)] = "",
    config: Annotated[str, Query(max_length=MAX_CONFIG)] = "",
    reset: bool = False,
) -> Response:
    """The method and the YAML again, after the dataset or the method changed: a new dataset brings the
    method its kind trains with; a new method brings its defaults, unless the text was edited (then a
    note offers them)."""
    trigger = request.headers.get("hx-trigger-name", "")
    values = {"dataset": dataset, "method": method if trigger != "dataset" else ""}
    context = await run_in_threadpool(_form, platform, me, {k: v for k, v in values.items() if v})
    new = Method(context["values"]["method"])
    old = Method(shown_method) if shown_method in METHODS else new
    if reset or (new != old and config.strip() == defaults_yaml(old).strip()):
        context["values"]["config"] = defaults_yaml(new)
        context["shown_method"] = str(new)
    else:
        context["values"]["config"] = config
        context["shown_method"] = str(old)
        if new != old:
            context["note"] = f"{new.upper()} has other defaults than {old.upper()}; your edits are kept."
    return render(request, "console/finetunes/_config.html", context)


def _start(platform: Platform, me: Principal, values: dict[str, str]) -> str:
    method_text = values.get("method", "sft")
    if method_text not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, not {method_text!r}", param="method")
    method = Method(method_text)
    if not values.get("dataset"):
        raise UserError("choose a dataset version to train on", param="dataset")
    settings = settings_from_yaml(values.get("config", ""), method)
    try:
        params = FinetuneParams(
            base=values.get("base") or DEFAULT_CHAT_MODEL,
            dataset=values["dataset"],
            method=method,
            config=settings,
            name=values.get("name") or None,
        )
    except ValidationError as exc:
        raise invalid(exc, "the fine-tune") from None
    job = finetunes(platform).start(me.project_id, params, created_by_key_id=me.key_id)
    return job.id


FIELDS = ("dataset", "base", "name", "method", "config", "shown_method")


@router.post("")
async def start(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    form = await request.form()
    values = {k: v.strip() if k != "config" else v for k in FIELDS if isinstance(v := form.get(k), str)}
    try:
        job_id = await run_in_threadpool(_start, platform, me, values)
    except UserError as exc:
        # The form again, as it was sent, with what to fix beside it.
        context = await run_in_threadpool(_form, platform, me, values)
        context["error"] = exc.message
        context["error_param"] = exc.param or ""
        return render(request, "console/finetunes/new.html", context, status=exc.status_code)
    return go(request, f"{PAGE.path}/{job_id}")
