"""`/console/evals`: the project's eval suites with their runs, the runs newest first (live while one is
going), and the form that starts a run from a suite's YAML (pasted, uploaded or a recent suite's).

The form calls the same `EvalService.start` as `fmops eval run` and `POST /api/evals/runs`: a suite
with problems comes back as the form with every problem the service found listed (a 400, nothing
queued). With candidates filled in, the run is a model selection (`fmops select`): the suite's
first target once per candidate model, read on the run's Select page. A run's own page is
`console_evals_run`; comparisons and the selection view are `console_evals_compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from fmops.auth import Principal, Role
from fmops.auth.sessions import password_member
from fmops.errors import NotFound, UserError
from fmops.evals import KIND, EvalService, SuiteError
from fmops.evals.browse import suite_definition, suites
from fmops.evals.select import candidate_suite
from fmops.jobs import get_kind
from fmops.platform import Platform, PlatformDep
from fmops.store.models import EvalRun
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import go, is_htmx
from fmops.web.pages import console_page
from fmops.web.templating import render

PAGE = console_page("/console/evals", "Eval runs", "Evaluate", role=Role.engineer, order=10)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))
PAGE_SIZE = 50
ACTIVE = ("queued", "running")
MAX_SUITE = 1_000_000  # characters (or bytes uploaded) of a suite's YAML
NEW_SUITE = """\
# An eval suite: cases x targets x scorers (the same YAML as `fmops eval run SUITE.yaml`).
name: my-suite
cases:                      # or {dataset: NAME} for an eval dataset version
  - {input: "What is 2+2? Answer with the number only.", expected: "4"}
targets:
  - {model: smollm2-135m-instruct}
scorers:
  - {name: contains, threshold: 0.8}
"""


def evals(platform: Platform) -> EvalService:
    return EvalService(platform.store, platform.catalog, platform.jobs, lambda: platform.datasets)


@dataclass(frozen=True, slots=True)
class RunRow:
    run: EvalRun
    progress: float  # 0..1 of the run's job
    message: str
    scores: list[tuple[str, float | None, int]]  # per target: name, mean weighted score, errors


def progress_of(platform: Platform, run: EvalRun) -> tuple[float, str]:
    if run.status == "succeeded":
        return 1.0, ""
    if run.job_id is None:
        return 0.0, ""
    try:
        job = platform.jobs.get(run.job_id, run.project_id)
    except NotFound:
        return 0.0, ""
    return float(job.progress or 0.0), job.message or ""


def run_row(platform: Platform, run: EvalRun) -> RunRow:
    progress, message = progress_of(platform, run)
    targets = (run.summary or {}).get("targets") or []
    scores = [(str(t["name"]), t["score"]["mean"], int(t["errors"])) for t in targets]
    return RunRow(run, progress, message, scores)


def _listing(platform: Platform, me: Principal, before: str | None, suite: str) -> dict[str, Any]:
    runs = evals(platform).list_runs(me.project_id, limit=PAGE_SIZE, before=before)
    shown = [r for r in runs if not suite or r.suite_name == suite]
    return {
        "rows": [run_row(platform, r) for r in shown],
        "suites": suites(platform.store, me.project_id),
        "suite": suite,
        "active": any(r.status in ACTIVE for r in shown),
        "older": runs[-1].id if len(runs) == PAGE_SIZE else None,
        "before": before,
    }


Cursor = Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-zA-Z]+$")]
SuiteName = Annotated[str, Query(max_length=100)]


@router.get("")
async def evals_page(
    request: Request, platform: PlatformDep, me: WebPrincipal, before: Cursor = None, suite: SuiteName = ""
) -> Response:
    context = await run_in_threadpool(_listing, platform, me, before, suite)
    if is_htmx(request) and not request.headers.get("hx-history-restore-request"):
        return render(request, "console/evals/_runs.html", context)  # the table's own refresh
    return render(request, "console/evals/index.html", context)


# --- the form -----------------------------------------------------------------------------------


def _form(platform: Platform, me: Principal, values: dict[str, str]) -> dict[str, Any]:
    return {
        "values": {"suite": NEW_SUITE, "candidates": "", "concurrency": "", **values},
        "suites": suites(platform.store, me.project_id),
        "models": sorted(platform.catalog.models(me.project_id)),
        "max_suite": MAX_SUITE,
        "error": None,
        "problems": [],
    }


def suite_yaml(definition: dict[str, Any]) -> str:
    return yaml.safe_dump(definition, sort_keys=False, default_flow_style=False, allow_unicode=True)


@router.get("/new")
async def new_page(
    request: Request, platform: PlatformDep, me: WebPrincipal, suite: SuiteName = "", candidates: str = ""
) -> Response:
    """`?suite=NAME` fills the text with that suite's newest definition (a 404 for an unknown one)."""
    values = {"candidates": candidates[:1000]}
    if suite:
        found = await run_in_threadpool(suite_definition, platform.store, me.project_id, suite)
        if found is None:
            raise NotFound(f"no eval suite {suite!r} in this project: start it once from YAML", param="suite")
        values["suite"] = suite_yaml(found)
    context = await run_in_threadpool(_form, platform, me, values)
    return render(request, "console/evals/new.html", context)


def _start(platform: Platform, me: Principal, values: dict[str, str]) -> str:
    me.require(get_kind(KIND).min_role, "run evals")
    text = values.get("suite", "")
    if not text.strip():
        raise UserError("paste a suite's YAML or upload its file", param="suite")
    concurrency = None
    if values.get("concurrency"):
        try:
            concurrency = int(values["concurrency"])
        except ValueError:
            raise UserError("concurrency: a whole number from 1 to 256", param="concurrency") from None
    raw: Any = text
    if values.get("candidates", "").strip():
        raw = candidate_suite(text, values["candidates"].split(","))
    run = evals(platform).start(
        me.project_id,
        raw,
        created_by_key_id=me.key_id,
        concurrency=concurrency,
        member_user_id=password_member(me),  # a password session has no key: as its member
    )
    return run.id


FIELDS = ("suite", "candidates", "concurrency")


@router.post("")
async def start(request: Request, platform: PlatformDep, me: WebPrincipal) -> Response:
    form = await request.form(max_part_size=MAX_SUITE + 1024)
    values = {k: v for k in FIELDS if isinstance(v := form.get(k), str)}
    values = {k: v.strip() if k != "suite" else v for k, v in values.items()}
    try:
        upload = form.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(MAX_SUITE + 1)
            if len(data) > MAX_SUITE:
                raise UserError(f"the suite file is over {MAX_SUITE:,} bytes", param="file")
            try:
                values["suite"] = data.decode()
            except UnicodeDecodeError:
                raise UserError("the suite file is not UTF-8 text (a YAML file)", param="file") from None
        if len(values.get("suite", "")) > MAX_SUITE:
            raise UserError(f"the suite is over {MAX_SUITE:,} characters", param="suite")
        run_id = await run_in_threadpool(_start, platform, me, values)
    except UserError as exc:
        # The form again, as it was sent, with every problem listed beside it.
        context = await run_in_threadpool(_form, platform, me, values)
        context["error"] = exc.message
        context["problems"] = exc.problems if isinstance(exc, SuiteError) else []
        return render(request, "console/evals/new.html", context, status=exc.status_code)
    return go(request, f"{PAGE.path}/runs/{run_id}")
