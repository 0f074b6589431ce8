"""`fmops data curate NAME[@VERSION] --recipe RECIPE.yaml [--wait]`: queue the curation job, and with
`--wait` follow it with a progress bar and print what each step did.

The job runs on the server's workers (`fmops up`); the recipe is checked here first, so a mistake in
it is one error listing every problem and nothing is queued.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import console, err_console, local_platform, project_id_of
from fmops.curation.job import submit
from fmops.curation.recipe import MAX_RECIPE_BYTES
from fmops.errors import FmopsError, UserError
from fmops.jobs import JobStatus

SHOWN_EXAMPLES = 3
NO_WORKER_HINT_S = 10.0


def _read_recipe(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise UserError(f"{path} is over {MAX_RECIPE_BYTES:,} bytes; is it a recipe?", param="recipe")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no recipe file {path}", param="recipe") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text", param="recipe") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; give the recipe's YAML file", param="recipe") from None


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def print_report(versions: list[Any]) -> None:
    """Per step: records in and out, what was removed or changed and why, a few examples."""
    table = Table(title="Curation", title_justify="left")
    for column in ("version", "step", "in", "out", "removed", "changed"):
        table.add_column(column, no_wrap=column == "version")
    for v in versions:
        counts = v.counts or {}
        step = next(iter(v.step or {"?": {}}))
        table.add_row(
            Text(v.ref),
            Text(step),
            f"{counts.get('in', 0):,}",
            f"{counts.get('out', 0):,}",
            Text(_reasons(counts.get("removed", {}))),
            Text(_reasons(counts.get("modified", {}))),
        )
    console.print(table)
    for v in versions:
        examples: dict[str, list[dict[str, Any]]] = (v.report or {}).get("examples", {})
        for reason, shown in examples.items():
            console.print(
                f"[bold]{escape(v.ref)} {escape(reason)}[/bold] (first {len(shown[:SHOWN_EXAMPLES])}):"
            )
            for example in shown[:SHOWN_EXAMPLES]:
                if "kept_text" in example:
                    similarity = example.get("similarity")
                    head = f"  row {example['row']} ~ row {example['kept_row']}"
                    head += f" (Jaccard {similarity:.2f})" if similarity is not None else " (same text)"
                    console.print(head, highlight=False, markup=False)
                    console.print(f"    removed: {example['text'][:160]!r}", highlight=False, markup=False)
                    console.print(
                        f"    kept:    {example['kept_text'][:160]!r}", highlight=False, markup=False
                    )
                else:
                    extra = {k: val for k, val in example.items() if k != "text"}
                    tail = f" {orjson.dumps(extra).decode()}" if extra else ""
                    console.print(f"  {example.get('text', '')[:160]!r}{tail}", highlight=False, markup=False)


def _follow(job_id: str, project_id: str) -> Any:
    jobs = local_platform().jobs
    began = time.monotonic()
    hinted = False
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("queued", total=1.0)
        while True:
            job = jobs.get(job_id, project_id)
            bar.update(task, completed=job.progress, description=escape(job.message or str(job.status)))
            if JobStatus(job.status).finished:
                return job
            if job.status == JobStatus.queued and not hinted and time.monotonic() - began > NO_WORKER_HINT_S:
                err_console.print(
                    "still queued: the job runs on the workers of `fmops up`; is the server running?"
                )
                hinted = True
            time.sleep(0.25)


def wait_for(job_id: str, project_id: str) -> Any:
    """Follow a job to its end with a progress bar: the job once it succeeded; an error saying how it
    ended otherwise; on Ctrl-C, exit 130 (the job goes on)."""
    try:
        done = _follow(job_id, project_id)
    except KeyboardInterrupt:
        err_console.print(f"stopped following; the job goes on (fmops jobs cancel {job_id} to stop it)")
        raise typer.Exit(130) from None
    if done.status != JobStatus.succeeded:
        raise FmopsError(f"job {job_id} {done.status}: {done.error or done.message or 'no detail'}")
    return done


def curate(
    ref: str = typer.Argument(..., help="NAME (newest version), NAME@VERSION, or a version id"),
    recipe: Path = typer.Option(..., "--recipe", help="The recipe: a YAML file with a `steps:` list"),
    wait: bool = typer.Option(False, "--wait", help="Follow the job and print its report"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Run a curation recipe over a dataset version as a job: one new version per step."""
    from fmops.cli.data import service  # the group's module imports this one; import it late

    project_id = project_id_of(project)
    datasets = service()
    job = submit(
        local_platform().jobs, datasets, project_id=project_id, dataset=ref, recipe=_read_recipe(recipe)
    )
    start = datasets.resolve(project_id, ref)
    console.print(f"job {job.id}: curating {escape(start.ref)}", highlight=False)
    if not wait:
        console.print(f"follow it with: fmops jobs show {job.id}", highlight=False)
        return
    done = wait_for(job.id, project_id)
    versions = [datasets.get(project_id, v["id"]) for v in (done.result or {}).get("versions", [])]
    print_report(versions)
    console.print(f"result: {escape((done.result or {}).get('output', start.ref))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("curate")(curate)
