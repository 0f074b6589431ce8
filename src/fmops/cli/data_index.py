"""`fmops data index NAME@VERSION`: build a version's few-shot example index now (fmops.fewshot).

Saving an endpoint with a `fewshot:` option builds it too; this prebuilds it (e.g. for the prompt
optimizer) and says what it holds. A version's index is built once: a second run loads it.
"""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import console, err_console, project_id_of
from fmops.cli.data import service
from fmops.errors import UserError
from fmops.providers.base import ProviderError


def index(
    ref: str = typer.Argument(..., help="NAME@VERSION (NAME alone: the newest version)"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Build (once) the MiniLM example index that endpoints' `fewshot:` option searches."""
    from fmops.fewshot.index import CACHE, ExampleIndex

    project_id = project_id_of(project)
    datasets = service()
    version = datasets.resolve(project_id, ref)
    built = not CACHE.stored(datasets, version, project_id=project_id)
    started = time.perf_counter()
    columns = (TextColumn("embedding inputs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("index", total=None)
        try:
            found = ExampleIndex.for_version(
                datasets,
                version,
                project_id=project_id,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except ProviderError as exc:
            raise UserError(f"the example index cannot be built: {exc.message}") from None
    seconds = time.perf_counter() - started
    what = f"built in {seconds:.1f} s" if built else "already built"
    console.print(
        f"{escape(version.ref)}: {len(found):,} of {version.rows:,} records are examples "
        f"({found.meta.encoder}, {found.vectors.shape[1]} dimensions); {what}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("index")(index)
