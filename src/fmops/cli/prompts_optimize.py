"""`fmops prompts optimize`: propose better versions of a prompt from an eval suite (issue 20), and
read optimisation runs back (`fmops prompts optimizations`, `fmops prompts optimization RUN`).

The run is a job: `--wait` runs it here with a progress bar (Ctrl-C cancels it: nothing is pushed),
else a server's workers take it. Exit codes as `fmops eval run`: 2 when the run could not start or
did not succeed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from fmops.cli.common import (
    CANNOT_RUN,
    acting_as,
    cannot_run,
    console,
    err_console,
    local_platform,
    settings,
)
from fmops.errors import FmopsError
from fmops.jobs import JobStatus

if TYPE_CHECKING:
    from fmops.optimizers.service import OptimizeService
    from fmops.store.models import PromptOptimization

ApiKey = typer.Option(None, "--api-key", envvar="FMOPS_API_KEY", help="Run as this key (default: admin)")


def _service() -> OptimizeService:
    from fmops.optimizers.job import service_for

    platform = local_platform()
    return service_for(platform.store, platform.settings, platform.jobs)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _wait(run: PromptOptimization) -> None:
    """Run the job here (or follow the worker that took it) with a progress bar."""
    from fmops.evals.job import run_here

    assert run.job_id is not None
    platform = local_platform()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_here, args=(platform.jobs, settings(), run.job_id, stop), daemon=True
    )
    worker.start()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(escape(f"{run.prompt_name} ({run.optimizer})"), total=1.0, note="")
            while True:
                job = platform.jobs.get(run.job_id, run.project_id)
                bar.update(task, completed=job.progress, note=escape(job.message or job.status))
                if JobStatus(job.status).finished:
                    break
                worker.join(0.5) if worker.is_alive() else time.sleep(0.5)
    except KeyboardInterrupt:
        stop.set()
        with contextlib.suppress(FmopsError):
            platform.jobs.cancel(run.job_id, run.project_id)
        err_console.print(f"cancelling optimisation {run.id}: no version is pushed")
        worker.join(timeout=60)
        raise typer.Exit(130) from None
    worker.join(timeout=30)


def _print_run(run: PromptOptimization, service: OptimizeService, diff: bool) -> None:
    result = run.result or {}
    console.print(
        f"optimisation [bold]{run.id}[/bold]: {escape(run.prompt_name)}@{run.start_version} with "
        f"{run.optimizer} on {escape(run.suite_name)} - {run.status}; {run.calls} calls of {run.budget}, "
        f"{run.dropped} proposals dropped",
        highlight=False,
    )
    table = Table(title="candidates", title_justify="left")
    for column in ("#", "from", "optimisation", "held-out", "change"):
        table.add_column(column, overflow="fold")
    for c in service.candidates(run.project_id, run.id):
        mark = " *" if result.get("winner") == c.seq else ""
        table.add_row(
            f"{c.seq}{mark}", "-" if c.parent_seq is None else str(c.parent_seq),
            _num(c.opt_score), _num(c.heldout_score), Text(c.change),
        )  # fmt: skip
    console.print(table)
    held = result.get("heldout")
    if held:
        ci = held.get("ci") or [None, None]
        console.print(
            f"held-out ({held['n']} cases): {held['mean_a']:.3f} -> {held['mean_b']:.3f}, gain "
            f"{held['diff']:+.3f} [95% CI {_num(ci[0])}, {_num(ci[1])}], {held['test']} "
            f"p = {held['p_value']:.3g}",
            highlight=False,
        )
    if run.pushed_version is not None:
        console.print(
            f"pushed {escape(run.prompt_name)}@{run.pushed_version} (no label moved): "
            f"fmops prompts label {escape(run.prompt_name)} staging {run.pushed_version}",
            highlight=False,
        )
    elif result.get("reason"):
        console.print(escape(str(result["reason"])))
    if run.error:
        err_console.print(f"[red]{escape(run.error)}[/red]")
    if diff and run.pushed_version is not None:
        console.print(Syntax(service.diff(run.project_id, run.id), "diff", word_wrap=True))


def _json(run: PromptOptimization, service: OptimizeService) -> None:
    data = {c.name: getattr(run, c.name) for c in run.__table__.columns}
    data["candidates"] = [
        {k: getattr(c, k) for k in ("seq", "parent_seq", "change", "messages", "opt_score", "heldout_score")}
        for c in service.candidates(run.project_id, run.id)
    ]
    console.print_json(orjson.dumps(data, default=str).decode())


def register(app: typer.Typer) -> None:
    """Add `optimize`, `optimizations` and `optimization` to the `fmops prompts` group."""

    @app.command("optimize")
    def optimize(
        prompt: str = typer.Argument(..., help="NAME, NAME@LABEL or NAME@VERSION to start from"),
        suite: Path = typer.Option(..., "--suite", help="The eval suite (YAML): its cases and scorers judge"),
        optimizer: str = typer.Option("instructions", "--optimizer", help="fewshot | instructions | gepa"),
        budget: int = typer.Option(
            200, "--budget", help="Calls the run may make (target and optimizer model)"
        ),
        optimizer_model: str | None = typer.Option(
            None, "--optimizer-model", help="The model that rewrites instructions (default: the target's)"
        ),
        holdout: float = typer.Option(0.4, "--holdout", help="Share of the cases held out to prove the gain"),
        wait: bool = typer.Option(
            False, "--wait", help="Run it here and wait (else a server's workers run it)"
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON"),
        api_key: str | None = ApiKey,
    ) -> None:
        """Optimise a prompt version against an eval suite; the best candidate, proven on held-out
        cases, is pushed as a new version (no label moves)."""
        from fmops.optimizers.service import Request

        try:
            text = suite.read_text()
        except OSError as exc:
            raise cannot_run(f"cannot read {suite}: {exc.strerror or exc}") from None
        service = _service()
        try:
            project_id, key_id = acting_as(api_key)
            request = Request(prompt, text, optimizer, budget, optimizer_model, holdout)
            run = service.start(project_id, request, created_by_key_id=key_id)
        except FmopsError as exc:
            raise cannot_run(exc.message) from None
        if not wait:
            console.print(
                f"optimisation {run.id} queued (job {run.job_id}): fmops prompts optimization {run.id}"
            )
            return
        _wait(run)
        run = service.get(project_id, run.id)
        _json(run, service) if as_json else _print_run(run, service, diff=True)
        if run.status != "succeeded":
            raise typer.Exit(CANNOT_RUN)

    @app.command("optimizations")
    def optimizations(
        prompt: str | None = typer.Option(None, "--prompt", help="Only this prompt's runs"),
        limit: int = typer.Option(20, "--limit", min=1, max=500),
        as_json: bool = typer.Option(False, "--json"),
        api_key: str | None = ApiKey,
    ) -> None:
        """Prompt optimisation runs, newest first."""
        project_id, _ = acting_as(api_key)
        runs = _service().runs(project_id, prompt=prompt, limit=limit)
        if as_json:
            console.print_json(
                orjson.dumps(
                    [{c.name: getattr(r, c.name) for c in r.__table__.columns} for r in runs], default=str
                ).decode()
            )
            return
        table = Table(title="prompt optimisations", title_justify="left")
        for column in ("id", "prompt", "optimizer", "status", "calls", "pushed", "held-out gain"):
            table.add_column(column, no_wrap=column == "id")
        for r in runs:
            held = (r.result or {}).get("heldout") or {}
            table.add_row(
                r.id, Text(f"{r.prompt_name}@{r.start_version}"), r.optimizer, r.status,
                f"{r.calls}/{r.budget}",
                "-" if r.pushed_version is None else str(r.pushed_version),
                "-" if held.get("diff") is None else f"{held['diff']:+.3f}",
            )  # fmt: skip
        console.print(table)

    @app.command("optimization")
    def optimization(
        run_id: str = typer.Argument(..., help="The optimisation run's id"),
        as_json: bool = typer.Option(False, "--json"),
        api_key: str | None = ApiKey,
    ) -> None:
        """An optimisation run: its candidates' scores, the held-out test and the winner's diff."""
        project_id, _ = acting_as(api_key)
        service = _service()
        try:
            run = service.get(project_id, run_id)
        except FmopsError as exc:
            raise cannot_run(exc.message) from None
        _json(run, service) if as_json else _print_run(run, service, diff=True)
