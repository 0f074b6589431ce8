"""`fmops finetune run|list|show|logs|cancel|resume|export`: LoRA fine-tunes as jobs on the workers.

`run` checks the config, dataset and base here first (a mistake is one clear error and nothing is
queued); `--wait` and `show --follow` draw a progress bar with the loss, tokens/s and ETA.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from fmops.artifacts import ArtifactStore
from fmops.auth import DEFAULT_PROJECT
from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.cli.common import console, err_console, fmt, local_platform, print_rows, project_id_of
from fmops.datasets import DatasetService
from fmops.errors import FmopsError
from fmops.finetune.config import Method, load_config
from fmops.finetune.job import FinetuneParams
from fmops.finetune.service import FinetuneService
from fmops.jobs import JobStatus

app = typer.Typer(help="Fine-tune models (LoRA SFT, DPO) on dataset versions.", no_args_is_help=True)


def service() -> FinetuneService:
    platform = local_platform()
    datasets = DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))
    return FinetuneService(platform.store, platform.settings, platform.jobs, platform.catalog, datasets)


def _follow(finetunes: FinetuneService, project_id: str, job_id: str) -> Any:
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    seen = 0
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("queued", total=1.0)
        while True:
            job = finetunes.jobs.get(job_id, project_id)
            bar.update(task, completed=job.progress, description=escape(job.message or str(job.status)))
            for line in finetunes.jobs.logs(job_id, project_id, after=seen):
                seen = line.id
                if line.line.startswith('{"event": "eval"'):
                    event = json.loads(line.line)
                    bar.console.print(f"step {event['step']}: validation loss {event['eval_loss']:.4f}")
            if JobStatus(job.status).finished:
                return job
            time.sleep(0.5)


def _print(view: dict[str, Any]) -> None:
    for key in ("id", "status", "progress", "message", "base", "dataset", "method", "model", "error"):
        if view.get(key) is not None:
            console.print(f"[bold]{key:>10}[/bold] {escape(fmt(view[key]))}", highlight=False)
    lineage = view.get("lineage")
    if lineage:
        console.print(f"[bold]{'metrics':>10}[/bold] {escape(fmt(lineage['metrics']))}", highlight=False)
        console.print(f"[bold]{'artifacts':>10}[/bold] {escape(fmt(lineage['artifacts']))}", highlight=False)
    curve = [e for e in view.get("curve", []) if e["event"] == "train"]
    if curve:
        last = curve[-1]
        console.print(
            f"[bold]{'loss':>10}[/bold] {curve[0]['loss']:.4f} -> {last['loss']:.4f} at step"
            f" {last['step']}/{last['max_steps']}",
            highlight=False,
        )


@app.command("run")
def run(
    dataset: str = typer.Option(..., "--dataset", help="NAME (newest version), NAME@VERSION or a version id"),
    base: str = typer.Option(DEFAULT_CHAT_MODEL, "--base", help="Catalog model, Hugging Face id or folder"),
    method: Method = typer.Option(Method.sft, "--method"),
    config: Path | None = typer.Option(None, "--config", help="YAML: TRL SFTConfig/DPOConfig fields, lora:"),
    name: str | None = typer.Option(None, "--name", help="Alias of the new model (default <base>-ft-<id>)"),
    wait: bool = typer.Option(False, "--wait", help="Follow the job; exit non-zero if it fails"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Start a fine-tune of BASE on a dataset version; the result is a new model in the catalog."""
    params = FinetuneParams(
        base=base, dataset=dataset, method=method, config=_user_settings(config, method), name=name
    )
    project_id = project_id_of(project)
    finetunes = service()
    job = finetunes.start(project_id, params)
    console.print(f"fine-tune {job.id} queued: {escape(base)} on {escape(dataset)}", highlight=False)
    if not wait:
        console.print(f"follow it with: fmops finetune show {job.id} --follow", highlight=False)
        return
    _wait(finetunes, project_id, job.id)


def _user_settings(config: Path | None, method: Method) -> dict[str, Any]:
    """Only what the file sets (the defaults stay the job's, so the lineage shows what was chosen)."""
    if config is None:
        return {}
    loaded = load_config(config, method)
    out = dict(loaded.training)
    if loaded.lora:
        out["lora"] = dict(loaded.lora)
    if loaded.num_threads is not None:
        out["num_threads"] = loaded.num_threads
    if loaded.num_processes != 1:
        out["num_processes"] = loaded.num_processes
    return out


def _wait(finetunes: FinetuneService, project_id: str, job_id: str) -> None:
    try:
        done = _follow(finetunes, project_id, job_id)
    except KeyboardInterrupt:
        err_console.print(f"stopped following; the job goes on (fmops finetune cancel {job_id} to stop it)")
        raise typer.Exit(130) from None
    _print(finetunes.get(project_id, job_id).to_dict())
    if done.status != JobStatus.succeeded:
        raise FmopsError(f"fine-tune {job_id} {done.status}: {done.error or done.message or 'no detail'}")


@app.command("list")
def list_finetunes(
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fine-tunes of the project, newest first."""
    views = [v.to_dict() for v in service().list(project_id_of(project), limit=limit)]
    rows = [
        (
            v["id"],
            v["status"],
            v["progress"],
            v["base"],
            v["dataset"],
            v["method"],
            v["model"],
            v["created_at"],
        )
        for v in views
    ]
    columns = ["id", "status", "progress", "base", "dataset", "method", "model", "created"]
    print_rows("Fine-tunes", columns, rows, as_json=as_json)


@app.command("show")
def show(
    job_id: str = typer.Argument(...),
    follow: bool = typer.Option(False, "--follow", help="Follow a running fine-tune with a progress bar"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A fine-tune's state, loss curve, metrics and the lineage of the model it made."""
    project_id = project_id_of(project)
    finetunes = service()
    if follow and not JobStatus(finetunes.jobs.get(job_id, project_id).status).finished:
        _wait(finetunes, project_id, job_id)
        return
    view = finetunes.get(project_id, job_id).to_dict()
    if as_json:
        console.print_json(json.dumps(view, default=str))
    else:
        _print(view)


@app.command("logs")
def logs(
    job_id: str = typer.Argument(...),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Every log line of a fine-tune (JSON lines carry the loss curve)."""
    finetunes = service()
    project_id = project_id_of(project)
    for line in finetunes.logs(project_id, job_id, limit=100_000):
        console.print(f"{fmt(line.ts)} {line.level:<7} {line.line}", markup=False, highlight=False)


@app.command("cancel")
def cancel(
    job_id: str = typer.Argument(...),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Stop a fine-tune (it saves a checkpoint first; `resume` continues it); nothing is registered."""
    finetunes = service()
    project_id = project_id_of(project)
    job = finetunes.cancel(project_id, job_id)
    console.print(f"fine-tune {job.id}: {'cancelled' if job.status == 'cancelled' else 'cancel requested'}")


@app.command("resume")
def resume(
    job_id: str = typer.Argument(...),
    wait: bool = typer.Option(False, "--wait", help="Follow the job; exit non-zero if it fails"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Continue a cancelled or failed fine-tune from its newest checkpoint, as a new job."""
    finetunes = service()
    project_id = project_id_of(project)
    job = finetunes.resume(project_id, job_id)
    console.print(f"fine-tune {job.id} queued: resumes {job_id}", highlight=False)
    if wait:
        _wait(finetunes, project_id, job.id)


@app.command("export")
def export(
    job_id: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write it (a folder for adapter and merged)"),
    what: str = typer.Option(
        "gguf",
        "--format",
        help="adapter: the PEFT adapter (safetensors); merged: the base with the adapter merged, as a"
        " transformers folder; gguf: the merged model as one GGUF file for llama.cpp; gguf-lora: the"
        " adapter as a GGUF LoRA over the base's GGUF",
    ),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
) -> None:
    """Write a succeeded fine-tune's model: adapter, merged folder, merged GGUF or GGUF LoRA."""
    finetunes = service()
    path = finetunes.export(project_id_of(project), job_id, what, out)
    console.print(f"wrote {escape(str(path))}", highlight=False)
