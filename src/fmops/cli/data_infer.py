"""`fmops data infer NAME[@VERSION] (--model M | --endpoint E) [--prompt NAME@LABEL] [--wait]`: answer
every record of a dataset version through the gateway, as a job; the answers become a chat dataset
version (the input as sent, then the answer) ready to curate and fine-tune on.

Everything is checked here first (dataset, model or endpoint, prompt, parameters, output, records),
so a mistake is one error and nothing is queued. The job runs on the server's workers (`fmops up`),
on a Ray cluster when they run with FMOPS_EXECUTOR=ray; `--wait` follows it with a progress bar.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from fmops.cli.common import acting_as, console, local_platform
from fmops.cli.data_curate import wait_for


def infer(
    ref: str = typer.Argument(..., help="NAME (newest version), NAME@VERSION, or a version id"),
    model: str | None = typer.Option(None, "--model", help="A model alias to answer with"),
    endpoint: str | None = typer.Option(None, "--endpoint", help="An endpoint to answer with (instead)"),
    prompt: str | None = typer.Option(
        None, "--prompt", help="NAME or NAME@LABEL: a prompt filled from each record (input, metadata)"
    ),
    output: str | None = typer.Option(
        None, "--output", help="Dataset the answers go to (default: this one if chat, else NAME-answers)"
    ),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="max_tokens of each call"),
    temperature: float | None = typer.Option(
        None, "--temperature", min=0, max=2, help="Sampling temperature"
    ),
    seed: int | None = typer.Option(None, "--seed", help="Sent as seed with every call"),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=256, help="Calls in flight per chunk"),
    wait: bool = typer.Option(False, "--wait", help="Follow the job and print what it made"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="FMOPS_API_KEY", help="Call models as this key (default: admin)"
    ),
) -> None:
    """Answer every record of a dataset version through the gateway, as a job: a new chat version."""
    from fmops.datasets.infer import submit

    project_id, key_id = acting_as(api_key)
    platform = local_platform()
    datasets = platform.datasets
    job = submit(
        platform.store,
        platform.settings,
        platform.jobs,
        datasets,
        project_id=project_id,
        dataset=ref,
        created_by_key_id=key_id,
        model=model,
        endpoint=endpoint,
        prompt=prompt,
        output=output,
        parameters={"max_tokens": max_tokens, "temperature": temperature},
        seed=seed,
        concurrency=concurrency,
    )
    start = datasets.get(project_id, job.params["dataset"])
    console.print(
        f"job {job.id}: answering {start.rows:,} records of {escape(start.ref)} "
        f"into {escape(job.params['output'])}",
        highlight=False,
    )
    if not wait:
        console.print(f"follow it with: fmops jobs show {job.id}", highlight=False)
        return
    result = wait_for(job.id, project_id).result or {}
    console.print(
        f"answered {result.get('ok', 0):,} of {result.get('records', 0):,} records, "
        f"{result.get('errors', 0):,} failed (kept, marked in metadata.inference)",
        highlight=False,
    )
    console.print(f"result: {escape(str(result.get('output')))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)
