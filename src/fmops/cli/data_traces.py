"""`fmops data from-traces NAME [trace filters] [--corrected-only] [--preference] [--append]`: a dataset
version from production traffic, with the filters of `fmops traces search`."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.markup import escape

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import console, local_platform, project_id_of
from fmops.cli.data import print_version, service
from fmops.cli.traces import _score_range, parse_since
from fmops.datasets.from_traces import TraceDatasets
from fmops.errors import UserError
from fmops.store import utcnow
from fmops.tracing.query import TraceFilters


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a whole number") from None


def trace_filters(
    *,
    since: str | None,
    start: datetime | None,
    end: datetime | None,
    prompt: str | None,
    score: str | None,
    **columns: str | None,
) -> TraceFilters:
    """The options of `fmops traces search` as filters (also for `fmops queues create`)."""
    if since and start:
        raise UserError("give --since or --start, not both")
    prompt_name, _, version = (prompt or "").partition(":")
    score_name, low, high = _score_range(score)
    return TraceFilters(
        start=utcnow() - parse_since(since) if since else start,
        end=end,
        prompt_name=prompt_name or None,
        prompt_version=_int(version, "--prompt") if version else None,
        score_name=score_name,
        min_score=low,
        max_score=high,
        **columns,  # type: ignore[arg-type]
    )


def from_traces(
    name: str = typer.Argument(..., help="Dataset to add a version to (made on first use)"),
    model: str | None = typer.Option(None, "--model"),
    provider: str | None = typer.Option(None, "--provider"),
    status: str | None = typer.Option(None, "--status", help="ok or error"),
    user: str | None = typer.Option(None, "--user"),
    session_id: str | None = typer.Option(None, "--session"),
    endpoint: str | None = typer.Option(None, "--endpoint"),
    prompt: str | None = typer.Option(None, "--prompt", help="Prompt name, or NAME:VERSION"),
    variant: str | None = typer.Option(None, "--variant", help="An endpoint's A/B variant"),
    feedback: str | None = typer.Option(None, "--feedback", help="any, none, positive or negative"),
    score: str | None = typer.Option(
        None, "--score", help="NAME, NAME>=X, NAME<=X or NAME=X..Y: traces with that evaluator score"
    ),
    q: str | None = typer.Option(None, "--q", help="Text in the input or output (case-insensitive)"),
    since: str | None = typer.Option(None, "--since", help="Only traces newer than this, e.g. 1h, 7d"),
    start: datetime | None = typer.Option(None, "--start", help="Only traces from this time (UTC)"),
    end: datetime | None = typer.Option(None, "--end", help="Only traces before this time (UTC)"),
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
    filters = trace_filters(
        since=since,
        start=start,
        end=end,
        prompt=prompt,
        score=score,
        model=model,
        provider=provider,
        status=status,
        user=user,
        session_id=session_id,
        endpoint=endpoint,
        variant=variant,
        feedback=feedback,
        q=q,
    )
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
