"""`fmops models`: the model catalog, managed locally by the operator."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer
from pydantic import SecretStr, ValidationError
from rich.text import Text
from rich.tree import Tree

from fmops.auth import DEFAULT_PROJECT
from fmops.catalog import ModelSpec, public_view
from fmops.cli.common import console, fmt, local_platform, print_rows, project_id_of, settings
from fmops.errors import UserError
from fmops.providers.generation import gguf_sampling, model_generation, recommended

if TYPE_CHECKING:
    from fmops.finetune.loop import Loop

app = typer.Typer(
    help="Model catalog: list, show, add, remove, pull; a model's loop (traces to promotion).",
    no_args_is_help=True,
)


@app.command("list")
def list_models(
    project: str = typer.Option(DEFAULT_PROJECT, "--project"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Models a project can call (built-ins and its own)."""
    models = local_platform().catalog.models(project_id_of(project))
    rows = [
        (
            m.alias,
            m.provider,
            m.provider_model if len(m.provider_model) < 60 else "…" + m.provider_model[-58:],
            m.context_window,
            m.input_price,
            m.output_price,
            "built-in" if m.builtin else "project",
        )
        for m in sorted(models.values(), key=lambda m: m.alias)
    ]
    print_rows(
        "Models",
        ["alias", "provider", "model", "context", "in $/1M", "out $/1M", "source"],
        rows,
        as_json=as_json,
    )


@app.command("show")
def show(alias: str = typer.Argument(...), project: str = typer.Option(DEFAULT_PROJECT, "--project")) -> None:
    """One model's profile (never its key)."""
    entry = local_platform().catalog.get(project_id_of(project), alias)
    for label, value in public_view(entry).items():
        console.print(f"[bold]{label:>17}[/bold] {fmt(value)}", highlight=False)


@app.command("add")
def add(
    alias: str = typer.Argument(..., help="The name callers use as `model`"),
    provider: str = typer.Option(..., "--provider", help="openai, anthropic, llamacpp, transformers, …"),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Provider-side model id (or file for local engines); vllm: default the served one",
    ),
    base_url: str | None = typer.Option(None, "--base-url"),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Stored encrypted", envvar="FMOPS_UPSTREAM_API_KEY"
    ),
    context_window: int | None = typer.Option(None, "--context-window"),
    input_price: float = typer.Option(0.0, "--input-price", help="Per 1M input tokens"),
    output_price: float = typer.Option(0.0, "--output-price", help="Per 1M output tokens"),
    fallback: list[str] = typer.Option(
        [], "--fallback", help="Alias to try when this one fails (repeatable)"
    ),
    timeout: float = typer.Option(60.0, "--timeout"),
    retries: int = typer.Option(2, "--retries"),
    cache_ttl: int | None = typer.Option(None, "--cache-ttl", help="Cache identical requests for N seconds"),
    launch: bool = typer.Option(False, "--launch", help="vllm: launch and supervise `vllm serve --model`"),
    tensor_parallel_size: int = typer.Option(
        1, "--tensor-parallel-size", help="vllm --launch: GPUs per model"
    ),
    max_loras: int = typer.Option(4, "--max-loras", help="vllm: LoRA adapters loaded at once"),
    max_lora_rank: int = typer.Option(16, "--max-lora-rank", help="vllm --launch: largest adapter rank"),
    port: int = typer.Option(8000, "--port", help="vllm --launch: the port vLLM listens on"),
    vllm_command: str = typer.Option("vllm", "--vllm-command", help="vllm --launch: the vllm executable"),
    vllm_args: str = typer.Option("", "--vllm-args", help="vllm --launch: more `vllm serve` arguments"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project"),
) -> None:
    """Add a model: e.g. `fmops models add gpt --provider openai --base-url URL --model gpt-4o-mini`.

    A local model (a .gguf file, a Hugging Face folder) brings its recommended generation settings
    (GGUF `general.sampling.*`, generation_config.json) and a chat cap on max_tokens.

    vLLM: `--provider vllm --base-url http://HOST:8000/v1` attaches to a running server (checked now);
    `--provider vllm --launch --model HF_ID --tensor-parallel-size N --max-loras K` lets the server
    launch and supervise `vllm serve` on this host (as it starts; logs in $FMOPS_HOME/vllm).
    """
    local = provider in ("llamacpp", "transformers")
    options: dict[str, str | int | float | bool] = {}
    if provider == "vllm":
        model, base_url, options = _vllm(
            model,
            base_url,
            api_key,
            launch=launch,
            tensor_parallel_size=tensor_parallel_size,
            max_loras=max_loras,
            max_lora_rank=max_lora_rank,
            port=port,
            command=vllm_command,
            extra_args=vllm_args,
        )
    elif launch:
        raise UserError("--launch is for --provider vllm only", param="launch")
    if model is None:
        raise UserError("--model is required: the provider-side model id or file", param="model")
    if local:
        options = recommended(model_generation(provider, model))
    try:
        spec = ModelSpec(
            alias=alias,
            provider=provider,
            model=model,
            base_url=base_url,
            api_key=SecretStr(api_key) if api_key else None,
            context_window=context_window,
            input_price=input_price,
            output_price=output_price,
            fallbacks=fallback,
            timeout_seconds=timeout,
            max_retries=retries,
            cache_ttl_seconds=cache_ttl,
            options=options,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    entry = local_platform().catalog.add(project_id_of(project), spec, trusted=True)
    console.print(f"added {entry.alias} ({entry.provider}: {entry.provider_model})")


def _vllm(
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    *,
    launch: bool,
    **launch_options: str | int,
) -> tuple[str, str | None, dict[str, str | int | float | bool]]:
    """A vllm model's id, base URL and options: a launched server's settings checked, or the running
    server at `base_url` asked what it serves (so a wrong URL or model fails now, not on a call)."""
    from fmops.providers.vllm import VLLMProvider, probe_server

    if launch:
        if base_url:
            raise UserError("--launch starts a server; --base-url attaches to one: give one of them")
        if not model:
            raise UserError(
                "--launch needs --model: the Hugging Face id or folder vLLM serves", param="model"
            )
        if int(launch_options["tensor_parallel_size"]) < 1:
            raise UserError("--tensor-parallel-size must be 1 or more: the GPUs one copy of the model spans")
        if not shutil.which(shlex.split(str(launch_options["command"]) or "vllm")[0]):
            console.print(
                f"warning: {launch_options['command']!r} is not on PATH; install vllm before the first call"
            )
        log_dir = str(settings().home / "vllm")
        options: dict[str, str | int | float | bool] = {"launch": True, "log_dir": log_dir, **launch_options}
        VLLMProvider.check_options(model, options)
        return model, None, options
    if not base_url:
        raise UserError(
            "--provider vllm needs --base-url (a running server) or --launch --model HF_ID", param="base_url"
        )
    options = {"max_loras": launch_options["max_loras"]}
    VLLMProvider.check_options(model or "", options)
    served = probe_server(base_url, api_key)
    if model is None:
        if len(served) != 1:
            raise UserError(f"the server serves {', '.join(served) or 'no model'}; choose one with --model")
        model = served[0]
    elif model not in served:
        raise UserError(f"the vLLM server serves {', '.join(served)}, not {model!r}", param="model")
    return model, base_url, options


@app.command("remove")
def remove(
    alias: str = typer.Argument(...), project: str = typer.Option(DEFAULT_PROJECT, "--project")
) -> None:
    """Remove a model from a project."""
    local_platform().catalog.remove(project_id_of(project), alias)
    console.print(f"removed {alias}")


@app.command("pull")
def pull(
    repo: str = typer.Argument(..., help="Hugging Face repo, e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF"),
    filename: str = typer.Argument(..., help="GGUF file in the repo"),
    alias: str | None = typer.Option(None, "--alias", help="Also add it to the catalog under this alias"),
    project: str = typer.Option(DEFAULT_PROJECT, "--project"),
) -> None:
    """Download a GGUF once into $FMOPS_HOME/models (needs internet) and optionally add it."""
    from fmops.providers.llamacpp import pull as pull_gguf

    platform = local_platform()
    path: Path = pull_gguf(repo, filename, platform.settings.home)
    console.print(f"downloaded {path}")
    if alias:
        generation = recommended(gguf_sampling(path))
        spec = ModelSpec(
            alias=alias,
            provider="llamacpp",
            model=str(path),
            timeout_seconds=300,
            max_retries=0,
            options=generation,
        )
        platform.catalog.add(project_id_of(project), spec, trusted=True)
        console.print(f"added {alias} (generation settings: {fmt(generation)})")


@app.command("loop")
def loop(
    alias: str = typer.Argument(..., help="A model a fine-tune produced"),
    url: str | None = typer.Option(
        None, "--url", envvar="FMOPS_URL", help="The server the console links point at (default: host:port)"
    ),
    project: str = typer.Option(DEFAULT_PROJECT, "--project"),
    as_json: bool = typer.Option(False, "--json", help="The loop as GET /api/models/ALIAS/loop returns it"),
) -> None:
    """A fine-tuned model's loop: traces -> dataset versions -> fine-tune -> model -> eval runs ->
    experiments -> promotions, each with its console URL."""
    from fmops.finetune.loop import model_loop

    platform = local_platform()
    found = model_loop(platform.store, project_id_of(project), alias)
    if as_json:
        console.print_json(orjson.dumps(found.to_dict()).decode())
        return
    s = platform.settings
    console.print(loop_tree(found, (url or f"http://{s.host}:{s.port}").rstrip("/")))


def loop_tree(found: Loop, base: str) -> Tree:
    """The chain top to bottom, one branch per step; names are text, never markup."""

    def node(parent: Tree, label: str, text: str, path: str | None) -> Tree:
        line = Text.assemble((f"{label} ", "bold"), text)
        if path:
            line.append(f"  {base}{path}", style="dim")
        return parent.add(line)

    tree = Tree(Text.assemble(("loop of ", "bold"), found.model.alias, (f"  {base}{found.url}", "dim")))
    traces = tree.add(Text("traces", style="bold"))
    for t in found.traces:
        said = ", ".join(f"{k}={v}" for k, v in t.filter.items()) or "all traces"
        count = f" · {t.traces:,} traces" if t.traces is not None else ""
        queue = f" · via queue {t.queue}" if t.queue else ""
        node(traces, "filter", f"{said}{count}{queue}", t.url)
    if not found.traces:
        traces.add(Text("none: the data did not come from traffic", style="dim"))
    for d in found.datasets:
        node(tree, "dataset", f"{d.ref} ({d.step or d.source}, {d.rows:,} rows)", d.url)
    ft = found.finetune
    node(
        tree, "fine-tune", f"{ft.job_id} {ft.status}: {ft.method} on {ft.dataset_ref} from {ft.base}", ft.url
    )
    where = found.model.provider if found.model.in_catalog else "removed from the catalog"
    node(tree, "model", f"{found.model.alias} ({where})", found.model.url)
    evals = tree.add(Text("eval runs", style="bold"))
    for r in found.evals:
        score = "-" if r.score is None else f"{r.score:.3f}"
        ci = f" [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" if r.ci else ""
        node(evals, r.suite, f"{r.run_id} {r.status}: score {score}{ci} (target {r.target})", r.url)
    if not found.evals:
        evals.add(Text("none yet: `fmops eval run` with this model as a target", style="dim"))
    endpoints = tree.add(Text("endpoints and experiments", style="bold"))
    for e in found.endpoints:
        branch = node(endpoints, e.name, "serves it as " + ", ".join(e.serves_as), e.url)
        for x in (x for x in found.experiments if x.endpoint == e.name):
            arms = ", ".join(f"{v.name}: {v.model or '-'} ({v.calls} calls)" for v in x.variants)
            branch.add(Text(f"experiment since {fmt(x.started_at)}: {arms}. {x.verdict}"))
    if not found.endpoints:
        endpoints.add(Text("none serves it now", style="dim"))
    promotions = tree.add(Text("promotions", style="bold"))
    for p in found.promotions:
        won = "this model" if p.this_model else (p.model or "another model")
        text = f"variant {p.variant} ({won}) by {p.actor or 'unknown'} at {fmt(p.at)}"
        node(promotions, p.endpoint, text, p.url)
    if not found.promotions:
        promotions.add(Text("none yet", style="dim"))
    return tree
