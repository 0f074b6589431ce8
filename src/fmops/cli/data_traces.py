"""`fmops data from-traces NAME [trace filters] [--corrected-only] [--preference] [--append]`: a dataset
version from production traffic, with the filters of `fmops traces search`."""

from __future__ import annotations

import typer
from rich.markup import escape

from fmops.auth import DEFAULT_PROJECT
from fmops.cli import trace_filters as opts
from fmops.cli.common import console, local_platform, project_id_of
from fmops.cli.data import print_version, service
from fmops.datasets.from_traces import TraceDatasets
from fmops.tracing.query import TraceFilters


@opts.with_trace_filters
def from_traces(
    name: str = typer.Argument(..., help="Dataset to add a version to (made on first use)"),
    filters: TraceFilters = opts.NO_FILTER,
    corrected_only: bool = typer.Option(
        False, "--corrected-only", help="Only traces a person corrected; the correction is the answer"
    ),
    preference: bool = typer.Option(
        False, "--preference", help="Preference pairs: corrections vs answers, thumbs up vs down on one input"
    ),
    append: bool = typer.Option(
        False, "--append", help="The new version is the latest one plus these records"
    ),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """A dataset version from the traces a filter matches; prints the new version."""
    project_id = project_id_of(project)
    datasets = service()
    made, counts = TraceDatasets(local_platform().store, datasets).build(
        project_id=project_id,
        name=name,
        filters=filters,
        corrected_only=corrected_only,
        preference=preference,
        append=append,
    )
    print_version(made, datasets, project_id)
    console.print(
        escape(
            f"{counts.spans:,} spans read, {counts.traces:,} traces with a chat example, "
            f"{counts.corrected:,} corrected, {counts.records:,} records"
        ),
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("from-traces")(from_traces)
