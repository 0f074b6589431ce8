"""`fmops jobs`: background work."""

from __future__ import annotations

import typer
from rich.markup import escape

from fmops.cli.common import console, fmt, local_platform, print_rows
from fmops.jobs import JobStatus

app = typer.Typer(help="Background jobs: list, show, cancel.", no_args_is_help=True)


@app.command("list")
def list_jobs(
    status: JobStatus | None = typer.Option(None, "--status"),
    kind: str | None = typer.Option(None, "--kind"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Newest jobs first, every project."""
    jobs = local_platform().jobs.find(project_id=None, status=status, kind=kind, limit=limit)
    rows = [(j.id, j.kind, j.status, j.progress, j.attempts, j.created_at, j.message) for j in jobs]
    print_rows(
        "Jobs", ["id", "kind", "status", "progress", "attempts", "created", "message"], rows, as_json=as_json
    )


@app.command("show")
def show(
    job_id: str = typer.Argument(...), log_lines: int = typer.Option(20, "--log", help="Last N log lines")
) -> None:
    """A job's state, result or error, and its latest log lines."""
    platform = local_platform()
    job = platform.jobs.get(job_id, None)
    for label, value in [
        ("id", job.id),
        ("kind", job.kind),
        ("status", job.status),
        ("progress", job.progress),
        ("message", job.message),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
        ("params", job.params),
        ("result", job.result),
        ("error", job.error),
    ]:
        console.print(f"[bold]{label:>9}[/bold] {escape(fmt(value))}", highlight=False, markup=True)
    lines = platform.jobs.logs(job_id, None, limit=100_000)[-log_lines:] if log_lines else []
    for line in lines:
        console.print(f"{fmt(line.ts)} {line.level:<7} {line.line}", markup=False, highlight=False)


@app.command("cancel")
def cancel(job_id: str = typer.Argument(...)) -> None:
    """Cancel a queued job at once, or ask a running one to stop."""
    job = local_platform().jobs.cancel(job_id, None)
    console.print(f"job {job.id}: {'cancelled' if job.status == 'cancelled' else 'cancel requested'}")
