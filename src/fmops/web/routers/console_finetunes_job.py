"""`/console/finetunes/{id}`: one fine-tune — its live loss and validation-loss curves, step, tokens/s
and ETA, the log's tail, cancel and resume, and on success the model it registered with its lineage
(traces or file -> dataset versions -> this job -> the model).

While the job is queued or running, the live part of the page asks for itself again every two
seconds (HTMX) and stops once the job has finished. Cancel and resume call the same
`FinetuneService` methods as the API and the CLI, behind the same role (engineer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.errors import NotFound
from fmops.finetune.job import KIND
from fmops.finetune.service import FinetuneService, FinetuneView
from fmops.jobs import JobStatus
from fmops.platform import Platform, PlatformDep
from fmops.store.models import EvalRun, Job
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import current_page
from fmops.web.routers import console_data_view as data_view
from fmops.web.routers.console_finetunes import ACTIVE, PAGE, dataset_ref, datasets, finetunes
from fmops.web.routers.console_finetunes_chart import loss_chart, short_number
from fmops.web.templating import render

router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]
LOG_TAIL = 60  # log lines the page shows
RESUMES_LOOKED_AT = 200  # newest fine-tunes searched for the ones that continue this one
EVAL_RUNS_LOOKED_AT = 500  # newest eval runs searched for the ones that called the model
POLL_SECONDS = 2


def log_text(line: str) -> str:
    """A log line as a person reads it: the JSON progress events summarised, other lines as they are."""
    if not line.startswith('{"event": '):
        return line
    try:
        event = json.loads(line)
    except ValueError:
        return line
    kind = event.get("event")
    if kind == "train":
        parts = [f"step {event.get('step')}/{event.get('max_steps')}"]
        for key, label in (("loss", "loss"), ("learning_rate", "lr")):
            if isinstance(event.get(key), int | float):
                parts.append(f"{label} {short_number(event[key])}")
        if isinstance(event.get("tokens_per_second"), int | float):
            parts.append(f"{event['tokens_per_second']:.0f} tok/s")
        return "train: " + ", ".join(parts)
    if kind == "eval" and isinstance(event.get("eval_loss"), int | float):
        return f"eval: step {event.get('step')}, validation loss {short_number(event['eval_loss'])}"
    if kind == "start":
        return (
            f"start: {event.get('base')} on {event.get('dataset')}, {event.get('train_records')} train"
            f" and {event.get('validation_records')} validation records"
        )
    if kind == "done":
        return f"done: registered {event.get('model')}"
    return line


def duration(seconds: float) -> str:
    """An ETA as a person reads it: 45 s, 3 min 05 s, 2 h 10 min."""
    total = max(round(seconds), 0)
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


@dataclass(frozen=True, slots=True)
class LineageStep:
    what: str  # "source", "dataset", "job", "model"
    title: str
    link: str | None = None
    note: str = ""
    current: bool = False


def _curve(service: FinetuneService, me: Principal, view: FinetuneView) -> list[dict[str, Any]]:
    """This job's events; a resumed job's curve starts with the stopped job's events before its own."""
    events = view.curve
    origin = (view.job.params or {}).get("resume_from")
    if not origin:
        return events
    try:
        earlier = service.curve(me.project_id, str(origin))
    except NotFound:
        return events
    first = min((int(e.get("step") or 0) for e in events), default=None)
    return [e for e in earlier if first is None or int(e.get("step") or 0) < first] + events


def _stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    train = [e for e in events if e.get("event") == "train"]
    evals = [e for e in events if e.get("event") == "eval"]
    last = train[-1] if train else (evals[-1] if evals else {})
    return {
        "step": last.get("step"),
        "max_steps": last.get("max_steps"),
        "epoch": last.get("epoch"),
        "loss": train[-1].get("loss") if train else None,
        "eval_loss": evals[-1].get("eval_loss") if evals else None,
        "tokens": last.get("tokens"),
        "tokens_per_second": train[-1].get("tokens_per_second") if train else None,
        "eta_seconds": last.get("eta_seconds"),
    }


def _lineage(platform: Platform, me: Principal, view: FinetuneView) -> list[LineageStep]:
    """Where the model came from, oldest first: the first version's source, each dataset version, this
    job, then the model (once registered)."""
    version_id = view.lineage.dataset_version_id if view.lineage else (view.job.params or {}).get("dataset")
    chain = []
    if isinstance(version_id, str) and version_id:
        try:
            chain = datasets(platform).lineage(me.project_id, version_id)
        except NotFound:  # the dataset was deleted since: the job still names it
            chain = []
    steps: list[LineageStep] = []
    if chain:
        source = data_view.describe_source(chain[-1].source)
        link = source.link if source.link and current_page(source.link.split("?", 1)[0]) else None
        steps.append(LineageStep("source", source.title, link, source.link_text if link else ""))
    for v in reversed(chain):
        note = f"{v.rows:,} rows" + (f" · {data_view.step_name(v.step)}" if v.step else "")
        steps.append(LineageStep("dataset", v.ref, f"/console/data/{v.name}/versions/{v.version}", note))
    steps.append(LineageStep("job", f"fine-tune {view.job.id}", f"{PAGE.path}/{view.job.id}", "", True))
    if view.lineage is not None:
        note = "" if view.lineage.model_id else "removed from the catalog since"
        link = "/console/models" if view.lineage.model_id else None
        steps.append(LineageStep("model", view.lineage.model_alias, link, note))
    return steps


@dataclass(frozen=True, slots=True)
class EvalRunSeen:
    """An eval run that called the fine-tuned model (as a model target, or a prompt on it)."""

    id: str
    suite: str
    status: str
    target: str
    score: float | None  # the target's mean weighted score, once the run has a summary
    created_at: datetime


def _target_score(summary: Any, index: int) -> float | None:
    targets = summary.get("targets") if isinstance(summary, dict) else None
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, dict) and target.get("index") == index:
            score = target.get("score")
            mean = score.get("mean") if isinstance(score, dict) else None
            return float(mean) if isinstance(mean, int | float) else None
    return None


def _eval_runs(platform: Platform, me: Principal, alias: str) -> list[EvalRunSeen]:
    """Eval runs whose targets called `alias` (what each run resolved its targets to), newest first."""
    query = (
        select(EvalRun)
        .where(EvalRun.project_id == me.project_id)
        .order_by(EvalRun.id.desc())
        .limit(EVAL_RUNS_LOOKED_AT)
    )
    with platform.store.session() as session:
        runs = list(session.scalars(query))
    found = []
    for run in runs:
        targets = (run.definition or {}).get("targets")
        for index, target in enumerate(targets if isinstance(targets, list) else []):
            if not isinstance(target, dict) or target.get("model") != alias:
                continue
            if target.get("kind") not in ("model", "prompt"):  # an endpoint's name is not a model's
                continue
            score = _target_score(run.summary, index)
            found.append(
                EvalRunSeen(
                    run.id, run.suite_name, run.status, str(target.get("name")), score, run.created_at
                )
            )
    return found


def _resumed_by(platform: Platform, me: Principal, job: Job) -> list[Job]:
    """Later fine-tunes that continue this one (a resume names the first job of the run)."""
    origin = (job.params or {}).get("resume_from") or job.id
    found = platform.jobs.find(project_id=me.project_id, kind=KIND, limit=RESUMES_LOOKED_AT)
    return [
        j
        for j in found
        if (j.params or {}).get("resume_from") == origin and j.id != job.id and j.created_at > job.created_at
    ]


def _live(platform: Platform, me: Principal, job_id: str) -> dict[str, Any]:
    service = finetunes(platform)
    view = service.get(me.project_id, job_id)
    status = JobStatus(view.job.status)
    events = _curve(service, me, view)
    model = None
    if view.lineage is not None and view.lineage.model_id:
        model = platform.catalog.models(me.project_id).get(view.lineage.model_alias)
    evals = _eval_runs(platform, me, view.lineage.model_alias) if view.lineage is not None else []
    return {
        "view": view,
        "ft": view.to_dict(),
        "status": str(status),
        "active": status in ACTIVE,
        "poll_seconds": POLL_SECONDS,
        "chart": loss_chart(events),
        "stats": _stats(events),
        "logs": [
            (line, log_text(line.line)) for line in service.log_tail(me.project_id, job_id, lines=LOG_TAIL)
        ],
        "lineage_steps": _lineage(platform, me, view),
        "resumed_by": _resumed_by(platform, me, view.job),
        "model": model,
        "eval_runs": evals,
        "can_cancel": status in ACTIVE,
        "can_resume": status in (JobStatus.failed, JobStatus.cancelled),
        "short": short_number,
        "duration": duration,
        "as_yaml": lambda value: yaml.safe_dump(value, sort_keys=False, default_flow_style=False),
    }


def _page(platform: Platform, me: Principal, job_id: str) -> dict[str, Any]:
    context = _live(platform, me, job_id)
    context["dataset_ref"] = dataset_ref(datasets(platform), me.project_id, context["view"], {})
    return context


@router.get("/{job_id}")
async def finetune_page(request: Request, platform: PlatformDep, me: WebPrincipal, job_id: JobId) -> Response:
    context = await run_in_threadpool(_page, platform, me, job_id)
    return render(request, "console/finetunes/job.html", context)


@router.get("/{job_id}/live")
async def live(request: Request, platform: PlatformDep, me: WebPrincipal, job_id: JobId) -> Response:
    """The part of the page that changes while the job runs (asked for by the page every 2 s)."""
    context = await run_in_threadpool(_live, platform, me, job_id)
    return render(request, "console/finetunes/_live.html", context)


@router.post("/{job_id}/cancel")
async def cancel(request: Request, platform: PlatformDep, me: WebPrincipal, job_id: JobId) -> Response:
    """Queued: cancelled at once; running: it checkpoints first, then stops (a 409 once finished)."""
    await run_in_threadpool(finetunes(platform).cancel, me.project_id, job_id)
    if is_htmx(request):
        context = await run_in_threadpool(_live, platform, me, job_id)
        return render(request, "console/finetunes/_live.html", context)
    return go(request, f"{PAGE.path}/{job_id}")


@router.post("/{job_id}/resume")
async def resume(request: Request, platform: PlatformDep, me: WebPrincipal, job_id: JobId) -> Response:
    """A new job that continues this cancelled or failed one from its newest checkpoint: its page next."""
    job = await run_in_threadpool(
        finetunes(platform).resume, me.project_id, job_id, created_by_key_id=me.key_id
    )
    return go(request, f"{PAGE.path}/{job.id}")
