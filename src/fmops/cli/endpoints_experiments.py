"""`fmops endpoints experiment|promote`: read an experiment's results and promote its winner."""

from __future__ import annotations

from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fmops.auth import DEFAULT_PROJECT
from fmops.cli.common import actor, console, local_platform, project_id_of
from fmops.endpoints import experiments
from fmops.endpoints.experiments import ExperimentReport, Mean, Rate
from fmops.endpoints.service import EndpointService
from fmops.prompts.service import PromptService


def _number(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric in ("error_rate", "positive_feedback"):
        return f"{value:.1%}"
    if metric == "cost":
        return f"{value:.4g}"
    return f"{value:.4g}" if metric.startswith("score:") else f"{value:.0f} ms"


def _cell(stat: Rate | Mean | None, metric: str) -> str:
    if stat is None or stat.value is None:
        return "-"
    text = _number(stat.value, metric)
    if stat.interval is not None:
        text += f" [{_number(stat.interval.low, metric)} – {_number(stat.interval.high, metric)}]"
    return text + (f"\nn={stat.n}" if isinstance(stat, Rate) or metric.startswith("score:") else "")


def _table(result: ExperimentReport) -> Table:
    """Metrics down, variants across (few variants, many metrics): fits a narrow terminal."""
    table = Table(
        title=f"Experiment on {result.endpoint} since {result.started_at:%Y-%m-%d %H:%M}",
        title_justify="left",
    )
    table.add_column("metric (95% interval)")
    for variant in result.variants:
        suffix = " (control)" if variant.name == result.control else ""
        table.add_column(Text(variant.name + suffix))
    p_values = {(c.variant, c.metric): c for c in result.comparisons}
    table.add_row("calls", *(str(v.calls) for v in result.variants))
    metrics = ["error_rate", "latency_ms", "cost", "positive_feedback"]
    metrics += sorted({f"score:{name}" for v in result.variants for name in v.scores})
    for metric in metrics:
        cells = []
        for variant in result.variants:
            text = _cell(variant.metric(metric), metric)
            found = p_values.get((variant.name, metric))
            if found is not None and found.p_adjusted is not None:
                mark = " *" if found.significant else ""
                text += f"\np={found.p_adjusted:.3g}{mark}"
            cells.append(Text(text))
        table.add_row(metric.removeprefix("score:"), *cells)
    table.add_row(
        "latency p50 / p95",
        *(
            f"{_number(v.latency_p50_ms, 'latency_ms')} / {_number(v.latency_p95_ms, 'latency_ms')}"
            for v in result.variants
        ),
    )
    return table


def _as_json(result: ExperimentReport) -> str:
    return orjson.dumps(experiments.snapshot(result), option=orjson.OPT_INDENT_2).decode()


def register(app: typer.Typer) -> None:
    """Add `experiment` and `promote` to the `fmops endpoints` group."""

    @app.command("experiment")
    def experiment(
        name: str = typer.Argument(..., help="Endpoint name"),
        project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON"),
    ) -> None:
        """Each variant's results with 95% intervals against the control (p Holm-corrected, * significant)."""
        result = experiments.report(local_platform().store, project_id_of(project), name)
        if as_json:
            print(_as_json(result))
            return
        console.print(_table(result))
        console.print(f"[bold]verdict:[/bold] {escape(result.verdict)}", highlight=False, soft_wrap=True)

    @app.command("promote")
    def promote(
        name: str = typer.Argument(..., help="Endpoint name"),
        variant: str = typer.Argument(..., help="The variant to serve from now on"),
        note: str | None = typer.Option(None, "--note", help="Why, kept in the endpoint's history"),
        project: str = typer.Option(DEFAULT_PROJECT, "--project", help="Project name"),
    ) -> None:
        """Serve only VARIANT: its prompt version (the endpoint's label moves to it), model and params."""
        platform = local_platform()
        service = EndpointService(
            platform.store, platform.catalog, PromptService(platform.store, platform.catalog)
        )
        view = experiments.promote(service, project_id_of(project), name, variant, actor=actor(), note=note)
        config = view.config
        serves: list[Any] = []
        if config.prompt is not None:
            which = f"label {config.label}" if config.label else f"version {config.version}"
            version = service.prompts.get(
                project_id_of(project), config.prompt, version=config.version, label=config.label
            )
            serves.append(f"prompt {config.prompt} {which} (version {version.version})")
        if config.model:
            serves.append(f"model {config.model}")
        console.print(
            f"promoted variant {escape(variant)} of {escape(name)}: it serves {escape(', '.join(serves))}; "
            "the experiment has ended",
            highlight=False,
            soft_wrap=True,
        )
