"""`fmops data`: datasets — import files, list, show, head, diff, export, delete.

Other modules add commands to this group by file convention: `fmops.cli.data_curate` and
`fmops.cli.data_traces`, when present, each expose `register(app)`.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.text import Text

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import console, err_console, fmt, local_platform, print_rows, project_id_of
from fmops.datasets import DatasetService, VersionInfo
from fmops.datasets.export import EXPORT_FORMATS, export_version
from fmops.datasets.imports import import_file
from fmops.datasets.readers import FORMATS
from fmops.datasets.records import RecordKind, parse_kind

app = typer.Typer(
    help="Datasets: import files as versions, list, show, head, diff, export, delete, sweep.",
    no_args_is_help=True,
)
PROJECT = typer.Option(DEFAULT_PROJECT, "--project", help="Project name")
JSON = typer.Option(False, "--json", help="Print JSON")
REF = typer.Argument(..., help="NAME (newest version), NAME@VERSION, or a version id")


def service() -> DatasetService:
    """The datasets of the local store (also for the commands other modules register)."""
    platform = local_platform()
    return platform.datasets


def version_data(version: VersionInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(version), "ref": version.ref}


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def print_version(
    version: VersionInfo, svc: DatasetService | None = None, project_id: str | None = None
) -> None:
    parent = None
    if version.parent_id is not None and svc is not None and project_id is not None:
        chain = svc.lineage(project_id, version.id)
        parent = (
            f"{chain[1].ref} ({version.parent_id})" if len(chain) > 1 else f"{version.parent_id} (deleted)"
        )
    for key, value in [
        ("dataset", version.ref),
        ("id", version.id),
        ("kind", version.kind),
        ("rows", version.rows),
        ("hash", version.content_hash),
        ("parent", parent or version.parent_id),
        ("source", _json(version.source) if version.source else None),
        ("recipe", _json(version.recipe) if version.recipe else None),
        ("step", _json(version.step) if version.step else None),
        ("counts", _json(version.counts) if version.counts else None),
        ("size", f"{version.size_bytes:,} bytes"),
        ("created", version.created_at),
    ]:
        console.print(f"[bold]{key:>8}[/bold] {escape(fmt(value))}", highlight=False, soft_wrap=True)
    if version.report:
        console.print(
            f"[bold]{'report':>8}[/bold] {escape(_json(version.report)[:2000])}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="A .jsonl, .csv or .parquet file, or a saved HF datasets folder"),
    name: str = typer.Option(..., "--name", "-n", help="The dataset (created on first import)"),
    kind: str | None = typer.Option(
        None, "--kind", help="chat, completion, preference or eval (default: from the records' shape)"
    ),
    format_: str | None = typer.Option(
        None, "--format", help=f"{', '.join(FORMATS)} (default: from the name)"
    ),
    on_error: str = typer.Option(
        "fail", "--on-error", help="fail: refuse the file; skip: leave bad rows out"
    ),
    description: str | None = typer.Option(None, "--description", help="What the dataset is for"),
    project: str = PROJECT,
) -> None:
    """Import a file as the dataset's next version; prints the version id (the detection on stderr)."""
    if on_error not in ("fail", "skip"):
        raise typer.BadParameter("use fail or skip", param_hint="--on-error")
    record_kind: RecordKind | None = None
    if kind is not None:
        try:
            record_kind = parse_kind(kind)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--kind") from None
    result = import_file(
        service(),
        project_id=project_id_of(project),
        path=file,
        name=name,
        kind=record_kind,
        fmt=format_,
        on_error="skip" if on_error == "skip" else "fail",
        description=description,
    )
    version = result.version
    err_console.print(f"detected {escape(result.detection)}", highlight=False, soft_wrap=True)
    for problem in result.problems[:10]:
        err_console.print(f"skipped {escape(problem)}", highlight=False, soft_wrap=True)
    state = "unchanged (same records as)" if version.reused else "new version"
    err_console.print(
        f"{escape(version.ref)}: {state} {version.version}, {version.rows:,} rows"
        + (f", {result.skipped:,} skipped" if result.skipped else ""),
        highlight=False,
    )
    print(version.id)


@app.command("list")
def list_datasets(project: str = PROJECT, as_json: bool = JSON) -> None:
    """A project's datasets: kind, newest version and its rows."""
    found = service().list_datasets(project_id_of(project))
    rows = [(d.name, d.kind.value, d.latest_version, d.rows, d.updated_at, d.description) for d in found]
    print_rows(
        "Datasets", ["name", "kind", "latest", "rows", "updated", "description"], rows, as_json=as_json
    )


@app.command("versions")
def versions(name: str = typer.Argument(...), project: str = PROJECT, as_json: bool = JSON) -> None:
    """Every version of a dataset, newest first."""
    found = service().list_versions(project_id_of(project), name)
    if as_json:
        console.print_json(_json([version_data(v) for v in found]))
        return
    rows = [(v.version, v.id, v.rows, v.content_hash[:12], v.source.get("type"), v.created_at) for v in found]
    print_rows(
        f"Versions of {name}", ["version", "id", "rows", "hash", "source", "created"], rows, as_json=False
    )


@app.command("show")
def show(ref: str = REF, project: str = PROJECT, as_json: bool = JSON) -> None:
    """A version: kind, rows, hash, parent, source, recipe, step and counts."""
    svc, project_id = service(), project_id_of(project)
    version = svc.resolve(project_id, ref)
    if as_json:
        console.print_json(_json(version_data(version)))
        return
    print_version(version, svc, project_id)


@app.command("head")
def head(
    ref: str = REF,
    n: int = typer.Option(5, "-n", min=1, max=10_000, help="How many records"),
    offset: int = typer.Option(0, "--offset", min=0, help="Start at this row"),
    search: str | None = typer.Option(None, "--search", help="Only records holding this text"),
    project: str = PROJECT,
) -> None:
    """The first records of a version, one JSON object per line."""
    svc = service()
    version = svc.resolve(project_id_of(project), ref)
    for record in svc.read_page(version, offset, n, search):
        console.print(Text(_json(record)), soft_wrap=True)


@app.command("diff")
def diff(
    a: str = typer.Argument(..., help="The old version (NAME@VERSION or id)"),
    b: str = typer.Argument(..., help="The new version"),
    examples: int = typer.Option(3, "--examples", min=0, max=50, help="Records shown per side"),
    project: str = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Records added and removed between two versions (compared by record hash)."""
    result = service().diff(project_id_of(project), a, b, examples=examples)
    if as_json:
        body = dataclasses.asdict(result)
        body["a"], body["b"] = result.a.ref, result.b.ref
        console.print_json(_json(body))
        return
    console.print(
        f"{escape(result.a.ref)} -> {escape(result.b.ref)}: [green]+{result.added:,}[/green] "
        f"[red]-{result.removed:,}[/red], {result.unchanged:,} unchanged",
        highlight=False,
    )
    for sign, style, records in (
        ("+", "green", result.added_examples),
        ("-", "red", result.removed_examples),
    ):
        for record in records:
            console.print(Text(f"{sign} {_json(record)}", style=style), soft_wrap=True)


@app.command("export")
def export(
    ref: str = REF,
    format_: str = typer.Option("jsonl", "--format", help=", ".join(EXPORT_FORMATS)),
    out: Path = typer.Option(..., "--out", "-o", help="The file (a folder for hf) to write"),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists"),
    project: str = PROJECT,
) -> None:
    """Write a version out: JSONL as TRL / OpenAI fine-tuning read it, Parquet, or an HF datasets folder."""
    svc = service()
    version = svc.resolve(project_id_of(project), ref)
    export_version(svc, version, format_, out, force=force)
    err_console.print(
        f"wrote {version.rows:,} records of {escape(version.ref)} to {escape(str(out))}", highlight=False
    )


@app.command("delete")
def delete(
    name: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask"),
    project: str = PROJECT,
) -> None:
    """Delete a dataset with every version and its files."""
    if not yes:
        typer.confirm(f"delete dataset {name!r} and all its versions?", abort=True)
    info = service().delete_dataset(project_id_of(project), name)
    console.print(f"deleted {escape(info.name)} ({info.latest_version} versions)", highlight=False)


@app.command("sweep")
def sweep(
    older_than: float = typer.Option(
        3600.0,
        "--older-than",
        min=0,
        help="Only files at least this many seconds old (a write may be running)",
    ),
) -> None:
    """Remove dataset files no version points at: what an import killed mid-write left behind, and
    few-shot indexes of records no version holds any more (a deleted dataset's)."""
    from fmops.datasets.infer import sweep_parts  # answered chunks of batch inferences that will not resume
    from fmops.fewshot.sweep import sweep_indexes

    store, artifacts = local_platform().store, service().artifacts
    removed = service().sweep(older_than_seconds=older_than)
    removed += sweep_parts(store, artifacts, older_than_seconds=older_than)
    removed += sweep_indexes(store, artifacts, older_than_seconds=older_than)
    for key in removed:
        err_console.print(f"removed {escape(key)}", highlight=False)
    console.print(f"removed {len(removed)} file(s)", highlight=False)


# Commands other helpers add to this group live in modules of their own.
for _module in (
    "fmops.cli.data_curate",
    "fmops.cli.data_traces",
    "fmops.cli.data_index",
    "fmops.cli.data_infer",
):
    try:
        _extension = importlib.import_module(_module)
    except ModuleNotFoundError as _missing:
        if _missing.name != _module:
            raise
        continue
    _extension.register(app)
