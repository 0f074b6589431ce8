"""`fmops eval harness`: lm-evaluation-harness tasks against a gateway model, as eval runs.

The harness's OpenAI client calls the gateway over HTTP, as the command's key: a server started in
this process for the command (the default), or a running one (`--base-url`). Each task is one eval
run (`fmops eval list|show|export` read it); nothing is downloaded: see `fmops.evals.harness`.
Exit codes: 0 every task ran, 2 a task could not run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fmops.cli.common import console, err_console, resolve_api_key, settings
from fmops.errors import FmopsError


@contextlib.contextmanager
def _gateway(base_url: str | None) -> Iterator[str]:
    if base_url:
        yield base_url.rstrip("/")
        return
    from fmops.server.inprocess import serving

    with serving(settings()) as url:
        yield url


def harness(
    tasks: str = typer.Option(..., "--tasks", help="Task names, comma-separated (generate_until tasks)"),
    model: str = typer.Option(..., "--model", help="The gateway model (alias) that answers"),
    include_path: Path | None = typer.Option(
        None, "--include-path", help="A folder of your own task YAML files (local data: dataset_path: json)"
    ),
    limit: float | None = typer.Option(
        None, "--limit", min=0, help="Documents per task (a fraction of them when under 1)"
    ),
    num_fewshot: int | None = typer.Option(None, "--num-fewshot", min=0, help="Few-shot examples per prompt"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Calls in flight"),
    max_gen_toks: int = typer.Option(256, "--max-gen-toks", min=1, help="Most tokens an answer may have"),
    seed: int = typer.Option(0, "--seed", help="Sent with every request; seeds few-shot sampling"),
    base_url: str | None = typer.Option(
        None, "--base-url", help="A running fmops server to call (default: one started in this process)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the runs and their summaries as JSON"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="FMOPS_API_KEY", help="Run as this key (default: admin)"
    ),
) -> None:
    """Run lm-evaluation-harness tasks against a gateway model, offline; each task is an eval run."""
    from fmops.cli.common import acting_as, cannot_run
    from fmops.cli.evals import _print_json, _print_summary, _run_json, _service
    from fmops.evals.harness import Harness, HarnessOptions, load_tasks

    names = [n.strip() for n in tasks.split(",") if n.strip()]
    if not names:
        raise cannot_run("--tasks: name at least one task")
    options = HarnessOptions(
        limit=limit, num_fewshot=num_fewshot, concurrency=concurrency, max_gen_toks=max_gen_toks, seed=seed
    )
    try:
        evals = _service()
        project_id, key_id = acting_as(api_key)
        key = resolve_api_key(api_key)
        if not as_json:
            err_console.print(f"loading {escape(', '.join(names))}…", highlight=False)
        loaded = load_tasks(names, include_path)
        runner = Harness(evals)
        started = [
            (name, task, runner.start(project_id, key_id, name, task, model, options))
            for name, task in loaded.items()
        ]
    except FmopsError as exc:
        raise cannot_run(exc.message) from None
    done: list[dict[str, Any]] = []
    with _gateway(base_url) as url:
        for name, task, run in started:
            if not as_json:
                err_console.print(
                    f"run {run.id}: {escape(run.suite_name)} on {escape(model)}", highlight=False
                )
            try:
                summary = runner.execute(run, name, task, base_url=url, api_key=key, options=options)
            except Exception as exc:  # the harness's own errors (a call that failed its retries...)
                raise cannot_run(f"run {run.id} failed: {type(exc).__name__}: {exc}") from None
            finished = evals.get_run(project_id, run.id)
            done.append({"run": _run_json(finished), "summary": summary})
            if not as_json:
                _print_summary(finished, summary)
                _print_harness(summary["harness"])
    if as_json:
        _print_json(done)


def _print_harness(found: dict[str, Any]) -> None:
    table = Table(
        title=escape(f"lm-eval {found['task']} (version {found['version']}, {found['n_shot']}-shot)"),
        title_justify="left",
    )
    for column in ("metric", "value", "stderr"):
        table.add_column(column)
    for name, metric in found["metrics"].items():
        value, stderr = metric["value"], metric["stderr"]
        table.add_row(
            Text(name),
            "-" if value is None else f"{value:.4f}",
            "-" if stderr is None else f"{stderr:.4f}",
        )
    console.print(table)
