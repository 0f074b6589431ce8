"""`fmops evaluators`: rules that score live traces, managed locally by the operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape

from fmops.cli.common import console, fmt, local_platform, print_rows, project_id_of, project_option
from fmops.errors import NotFound, UserError
from fmops.evaluators import EvaluatorService, RuleCreate, RuleUpdate
from fmops.scorers import describe
from fmops.scorers import scorers as installed_scorers
from fmops.store.models import EvaluatorRule

app = typer.Typer(
    help="Online evaluators: score sampled live traces (list, create, show, update, delete, scorers).",
    no_args_is_help=True,
)


def _config_options() -> tuple[Any, Any]:
    return (
        typer.Option(None, "--config", help='Scorer config as JSON, e.g. \'{"pattern": "^OK"}\''),
        typer.Option(None, "--config-file", help="Scorer config in a JSON file", exists=True, dir_okay=False),
    )


CONFIG, CONFIG_FILE = _config_options()


def _service() -> EvaluatorService:
    platform = local_platform()
    return EvaluatorService(platform.store, platform.catalog)


def _config(text: str | None, path: Path | None) -> dict[str, Any] | None:
    if text is not None and path is not None:
        raise typer.BadParameter("give --config or --config-file, not both", param_hint="--config")
    raw = path.read_text() if path is not None else text
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--config") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--config")
    return value


def _body(model: type[RuleCreate] | type[RuleUpdate], fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{where + ': ' if where else ''}{first['msg']}") from None


def _find(project_id: str, rule: str) -> EvaluatorRule:
    """A rule by name, or by id."""
    service = _service()
    try:
        return service.by_name(project_id, rule)
    except NotFound:
        try:
            return service.get(project_id, rule)
        except NotFound:
            raise NotFound(
                f"no evaluator named {rule!r} in this project; see `fmops evaluators list`"
            ) from None


def _describe(rule: EvaluatorRule) -> None:
    for label, value in [
        ("id", rule.id),
        ("name", rule.name),
        ("scorer", rule.scorer),
        ("model", rule.model or "any"),
        ("endpoint", rule.endpoint or "any"),
        ("sample rate", rule.sample_rate),
        ("enabled", rule.enabled),
        ("created", rule.created_at),
        ("config", orjson.dumps(rule.config).decode()),
    ]:
        console.print(f"[bold]{label:>11}[/bold] {escape(fmt(value))}", highlight=False, soft_wrap=True)


@app.command("list")
def list_rules(project: str = project_option(), as_json: bool = typer.Option(False, "--json")) -> None:
    """A project's evaluator rules."""
    rules = _service().rules(project_id_of(project))
    if as_json:
        rows: list[tuple[Any, ...]] = [
            (r.id, r.name, r.scorer, r.config, r.model, r.endpoint, r.sample_rate, r.enabled) for r in rules
        ]
        columns = ["id", "name", "scorer", "config", "model", "endpoint", "sample_rate", "enabled"]
    else:  # names are what the other commands take; ids are in --json
        rows = [
            (r.name, r.scorer, r.model or "any", r.endpoint or "any", r.sample_rate, r.enabled) for r in rules
        ]
        columns = ["name", "scorer", "model", "endpoint", "sample", "enabled"]
    print_rows("Evaluators", columns, rows, as_json=as_json)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Rule name; also the name of the scores it writes"),
    scorer: str = typer.Option(..., "--scorer", help="See `fmops evaluators scorers`"),
    config: str | None = CONFIG,
    config_file: Path | None = CONFIG_FILE,
    model: str | None = typer.Option(None, "--model", help="Only calls to this model"),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only calls through this endpoint"),
    sample_rate: float = typer.Option(
        1.0, "--sample-rate", help="Share of matching traces scored, in (0, 1]"
    ),
    disabled: bool = typer.Option(False, "--disabled", help="Create it switched off"),
    project: str = project_option(),
) -> None:
    """Score live traces, e.g. `fmops evaluators create is-json --scorer json --model gpt`."""
    body = _body(
        RuleCreate,
        {
            "name": name,
            "scorer": scorer,
            "config": _config(config, config_file) or {},
            "model": model,
            "endpoint": endpoint,
            "sample_rate": sample_rate,
            "enabled": not disabled,
        },
    )
    rule = _service().create(project_id_of(project), body, created_by_key_id=None)
    console.print(f"created evaluator {rule.name} ({rule.id})")


@app.command("show")
def show(rule: str = typer.Argument(..., help="Rule name or id"), project: str = project_option()) -> None:
    """One rule and its scorer's config."""
    _describe(_find(project_id_of(project), rule))


@app.command("update")
def update(
    rule: str = typer.Argument(..., help="Rule name or id"),
    name: str | None = typer.Option(None, "--name", help="Rename it (new scores carry the new name)"),
    scorer: str | None = typer.Option(None, "--scorer"),
    config: str | None = CONFIG,
    config_file: Path | None = CONFIG_FILE,
    model: str | None = typer.Option(None, "--model", help="Only calls to this model; `any` for all"),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only this endpoint; `any` for all"),
    sample_rate: float | None = typer.Option(None, "--sample-rate"),
    enabled: bool | None = typer.Option(None, "--enable/--disable"),
    project: str = project_option(),
) -> None:
    """Change a rule; options left out keep their value."""
    project_id = project_id_of(project)
    found = _find(project_id, rule)
    fields: dict[str, Any] = {
        k: v
        for k, v in {
            "name": name,
            "scorer": scorer,
            "config": _config(config, config_file),
            "sample_rate": sample_rate,
            "enabled": enabled,
        }.items()
        if v is not None
    }
    for key, value in (("model", model), ("endpoint", endpoint)):
        if value is not None:
            fields[key] = None if value == "any" else value
    if not fields:
        raise UserError("nothing to change: give at least one option (see `fmops evaluators update --help`)")
    changed = _service().update(project_id, found.id, _body(RuleUpdate, fields))
    _describe(changed)


@app.command("delete")
def delete(rule: str = typer.Argument(..., help="Rule name or id"), project: str = project_option()) -> None:
    """Delete a rule; the scores it wrote stay on their traces."""
    project_id = project_id_of(project)
    found = _service().delete(project_id, _find(project_id, rule).id)
    console.print(f"deleted evaluator {found.name}")


@app.command("scorers")
def list_scorers(
    as_json: bool = typer.Option(False, "--json", help="With each config's JSON schema"),
) -> None:
    """Installed scorers (built-in and plugins): how they run, what they need, where they can be used."""
    data = [describe(name, cls) for name, cls in sorted(installed_scorers().items())]
    if as_json:
        console.print_json(orjson.dumps(data).decode())
        return
    facts = ("needs_model", "needs_expected", "needs_record", "aggregates", "slow")
    rows = [
        (
            d["name"],
            d["runs_as"],
            ", ".join(f.removeprefix("needs_") for f in facts if d[f]) or "-",
            ", ".join(use for use, ok in d["usable_in"].items() if ok),
            d["description"],
        )
        for d in data
    ]
    print_rows("Scorers", ["name", "runs as", "needs / is", "usable in", "description"], rows, as_json=False)
