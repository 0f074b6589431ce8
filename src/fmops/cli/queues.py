"""`fmops queues`: annotation queues — create one from a trace filter, list, show progress and
agreement, export what people decided as a dataset version, delete.

Run on the server's machine, as its operator: annotators work queues in the console (or the API).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape

from fmops.annotation import AnnotationService, QueueCreate, QueueView
from fmops.auth import DEFAULT_PROJECT, Principal, Role
from fmops.cli import trace_filters as opts
from fmops.cli.common import actor, console, fmt, local_platform, print_rows
from fmops.cli.data import print_version, service
from fmops.datasets.from_traces import filter_json
from fmops.errors import UserError
from fmops.tracing.query import TraceFilters

app = typer.Typer(
    help="Annotation queues: create from traces, list, show, export, delete.", no_args_is_help=True
)
PROJECT = typer.Option(DEFAULT_PROJECT, "--project", help="Project name")
JSON = typer.Option(False, "--json", help="Print JSON")
QUEUE = typer.Argument(..., help="Queue name or id")


def _operator(project: str) -> Principal:
    """The operator, as an admin of the project (whoever can read FMOPS_HOME runs the server)."""
    platform = local_platform()
    with platform.store.session() as session:
        found = platform.auth.project_by_name(session, project)
        project_id, project_name = found.id, found.name
    name = actor()
    return Principal(
        key_id="",
        user_id=f"operator:{name}",
        user_name=name,
        project_id=project_id,
        project_name=project_name,
        role=Role.admin,
    )


def _service() -> AnnotationService:
    platform = local_platform()
    return AnnotationService(platform.store, platform.tracer, service())


def _label_field(spec: str) -> dict[str, Any]:
    """`topic=billing,shipping,other` (a trailing `!` on the name: required)."""
    name, found, values = spec.partition("=")
    if not found or not name.strip() or not values.strip():
        raise UserError(f"--label {spec!r}: use NAME=VALUE1,VALUE2[,...], e.g. topic=billing,shipping")
    name = name.strip()
    required = name.endswith("!")
    return {
        "name": name.rstrip("!"),
        "values": [v.strip() for v in values.split(",") if v.strip()],
        "required": required,
    }


def _body(data: dict[str, Any]) -> QueueCreate:
    try:
        return QueueCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "queue"
        raise UserError(f"{where}: {first['msg']}") from None


def _progress(view: QueueView) -> str:
    p = view.progress
    return f"{p.done}/{p.total} done, {p.skipped} skipped, {p.remaining} remaining"


@app.command("create")
@opts.with_trace_filters
def create(
    name: str = typer.Argument(..., help="Queue name"),
    filters: TraceFilters = opts.NO_FILTER,
    rate: float = typer.Option(1.0, "--rate", help="Sampling rate in (0, 1], by trace id"),
    max_items: int = typer.Option(1000, "--max-items", help="Items at most"),
    label: list[str] = typer.Option(
        [], "--label", help="A label field: NAME=V1,V2,... (NAME! to require it)"
    ),
    overlap: int = typer.Option(1, "--overlap", help="People who decide each item (2+ measures agreement)"),
    annotator: list[str] = typer.Option([], "--annotator", help="User who may work it (repeat); default all"),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset the export adds to; default NAME"),
    description: str | None = typer.Option(None, "--description"),
    project: str = PROJECT,
) -> None:
    """Make a queue from the traces a filter matches (sampled), with a label schema."""
    body = _body(
        {
            "name": name,
            "description": description,
            "filter": filter_json(filters),
            "sampling_rate": rate,
            "max_items": max_items,
            "label_schema": [_label_field(s) for s in label],
            "overlap": overlap,
            "annotators": annotator,
            "dataset": dataset,
        }
    )
    view = _service().create(_operator(project), body)
    console.print(
        f"created queue {escape(view.queue.name)} ({view.queue.id}): {view.progress.total} items",
        highlight=False,
    )


@app.command("list")
def list_queues(project: str = PROJECT, as_json: bool = JSON) -> None:
    """Queues of the project with their progress."""
    views = _service().queues(_operator(project))
    rows = [
        (
            v.queue.id,
            v.queue.name,
            v.progress.total,
            v.progress.done,
            v.progress.skipped,
            v.progress.remaining,
            v.queue.overlap,
            v.queue.dataset,
            v.queue.created_at,
        )
        for v in views
    ]
    columns = ["id", "name", "items", "done", "skipped", "remaining", "overlap", "dataset", "created"]
    print_rows("Annotation queues", columns, rows, as_json=as_json)


@app.command("show")
def show(queue: str = QUEUE, project: str = PROJECT, as_json: bool = JSON) -> None:
    """A queue: its filter, label schema, progress, and agreement (Cohen's kappa per field)."""
    svc = _service()
    view = svc.view(_operator(project), queue)
    agreement = svc.agreement(view.queue)
    q = view.queue
    if as_json:
        data = {
            "id": q.id,
            "name": q.name,
            "filter": q.filter,
            "sampling_rate": q.sampling_rate,
            "label_schema": q.label_schema,
            "overlap": q.overlap,
            "annotators": q.annotators,
            "dataset": q.dataset,
            "progress": dataclasses.asdict(view.progress),
            "agreement": [dataclasses.asdict(a) for a in agreement],
        }
        console.print(orjson.dumps(data, default=str).decode(), markup=False, highlight=False, soft_wrap=True)
        return
    for key, value in [
        ("queue", f"{q.name} ({q.id})"),
        ("filter", orjson.dumps(q.filter).decode()),
        ("rate", q.sampling_rate),
        ("labels", "; ".join(f"{f['name']}: {', '.join(f['values'])}" for f in q.label_schema) or None),
        ("overlap", q.overlap),
        ("people", ", ".join(q.annotators) or "every annotator"),
        ("dataset", q.dataset),
        ("progress", _progress(view)),
        ("created", f"{fmt(q.created_at)} by {q.created_by}"),
    ]:
        console.print(f"[bold]{key:>9}[/bold] {escape(fmt(value))}", highlight=False, soft_wrap=True)
    rows = [(a.field, a.pairs, a.observed, None if a.kappa is None else round(a.kappa, 3)) for a in agreement]
    print_rows("Agreement", ["field", "pairs", "observed", "kappa"], rows, as_json=False)


@app.command("export")
def export(
    queue: str = QUEUE,
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset to add the version to; default the queue's"
    ),
    project: str = PROJECT,
) -> None:
    """A dataset version of the decided items: corrected answers, labels in metadata."""
    operator = _operator(project)
    version = _service().export(operator, queue, dataset)
    print_version(version, service(), operator.project_id)


@app.command("delete")
def delete(queue: str = QUEUE, project: str = PROJECT) -> None:
    """Delete a queue, its items and decisions (the feedback they made stays on the traces)."""
    _service().delete(_operator(project), queue)
    console.print(f"deleted queue {escape(queue)}", highlight=False)
