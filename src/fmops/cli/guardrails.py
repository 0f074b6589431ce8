"""`fmops guardrails`: the installed checks and the policies that run them, managed locally by the operator.

A change made here runs on the next endpoint call of every server on the same database, and on their
plain model calls within a second (each server checks the project's registry generation at most once
a second for those: see `fmops.guardrails.service.RECHECK_SECONDS`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape

from fmops.cli.common import actor, console, local_platform, print_rows, project_id_of, project_option
from fmops.errors import UserError
from fmops.guardrails.policy import Scope
from fmops.guardrails.schemas import Applied, PolicyView, checked, load_policies

app = typer.Typer(
    help="Guardrails: checks on input and output, run as policies on the project, a model or an endpoint "
    "(list, policies, add, rm, enable, disable, apply).",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON")
MODEL = typer.Option(None, "--model", help="Attach to this model (by alias) instead of the project")
ENDPOINT = typer.Option(None, "--endpoint", help="Attach to this endpoint instead of the project")


def _where(model: str | None, endpoint: str | None) -> tuple[Scope, str]:
    if model is not None and endpoint is not None:
        raise typer.BadParameter("give --model or --endpoint, not both", param_hint="--model")
    if model is not None:
        return Scope.model, model
    if endpoint is not None:
        return Scope.endpoint, endpoint
    return Scope.project, ""


def _config(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--config") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--config")
    return value


def _rows(views: list[PolicyView]) -> list[tuple[Any, ...]]:
    return [
        (
            v.scope.value,
            v.target or "-",
            v.name,
            v.spec.guardrail,
            v.spec.on,
            v.spec.action.value,
            v.spec.on_error,
            v.spec.enabled,
            orjson.dumps(v.spec.config).decode() if v.spec.config else "-",
        )
        for v in views
    ]


COLUMNS = ["scope", "target", "name", "guardrail", "on", "action", "on error", "enabled", "config"]


@app.command("list")
def list_guardrails(as_json: bool = JSON) -> None:
    """The installed guardrails: where each can run, and whether it finds spans (for redact and mask)."""
    from fmops.guardrails.registry import describe, guardrails

    found = [describe(name, cls) for name, cls in sorted(guardrails().items())]
    if as_json:
        console.print_json(orjson.dumps(found).decode())
        return
    rows = [
        (d["name"], "+".join(d["stages"]), d["spans"], d["slow"] or d["needs_model"], d["description"])
        for d in found
    ]
    print_rows("Guardrails", ["name", "on", "spans", "slow", "description"], rows, as_json=False)


@app.command("policies")
def list_policies(
    scope: Scope | None = typer.Option(None, "--scope", help="Only those attached this way"),
    target: str | None = typer.Option(None, "--target", help="Only those on this model or endpoint"),
    project: str = project_option(),
    as_json: bool = JSON,
) -> None:
    """A project's policies: the project's first, then the models', then the endpoints'."""
    views = local_platform().guardrails.list(project_id_of(project), scope=scope, target=target)
    if as_json:
        console.print_json(orjson.dumps([v.public() for v in views], default=str).decode())
        return
    print_rows("Policies", COLUMNS, _rows(views), as_json=False)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The policy's name: named in a blocked caller's error"),
    guardrail: str = typer.Option(..., "--guardrail", help="See `fmops guardrails list`"),
    on: str = typer.Option("input", "--on", help="input, output or both"),
    action: str = typer.Option("block", "--action", help="block, redact, mask, flag or retry (output)"),
    config: str | None = typer.Option(
        None, "--config", help='The guardrail\'s config as JSON, e.g. \'{"types": ["email"]}\''
    ),
    on_error: str = typer.Option(
        "closed", "--on-error", help="When the check cannot decide: closed blocks, open allows"
    ),
    disabled: bool = typer.Option(False, "--disabled", help="Store it without running it"),
    model: str | None = MODEL,
    endpoint: str | None = ENDPOINT,
    project: str = project_option(),
) -> None:
    """Attach a new policy to the project (or --model / --endpoint); it runs on the next call."""
    scope, target = _where(model, endpoint)
    policy = checked(
        {
            "name": name,
            "guardrail": guardrail,
            "on": on,
            "action": action,
            "config": _config(config),
            "on_error": on_error,
            "enabled": not disabled,
            "scope": scope,
            "target": target,
        }
    )
    view = local_platform().guardrails.create(project_id_of(project), policy, actor=actor())
    console.print(f"added policy {escape(view.label)}", highlight=False)


@app.command("rm")
def remove(
    name: str = typer.Argument(..., help="The policy's name"),
    model: str | None = MODEL,
    endpoint: str | None = ENDPOINT,
    project: str = project_option(),
) -> None:
    """Remove a policy (of the project, or of --model / --endpoint)."""
    scope, target = _where(model, endpoint)
    view = local_platform().guardrails.delete(project_id_of(project), scope, target, name, actor=actor())
    console.print(f"removed policy {escape(view.label)}", highlight=False)


@app.command("enable")
def enable(
    name: str = typer.Argument(..., help="The policy's name"),
    model: str | None = MODEL,
    endpoint: str | None = ENDPOINT,
    project: str = project_option(),
) -> None:
    """Turn a policy on again (of the project, or of --model / --endpoint)."""
    _switch(name, model, endpoint, project, enabled=True)


@app.command("disable")
def disable(
    name: str = typer.Argument(..., help="The policy's name"),
    model: str | None = MODEL,
    endpoint: str | None = ENDPOINT,
    project: str = project_option(),
) -> None:
    """Stop running a policy, keeping it stored (of the project, or of --model / --endpoint). Works on
    a policy whose guardrail no longer builds, too."""
    _switch(name, model, endpoint, project, enabled=False)


def _switch(name: str, model: str | None, endpoint: str | None, project: str, *, enabled: bool) -> None:
    scope, target = _where(model, endpoint)
    guardrails = local_platform().guardrails
    project_id = project_id_of(project)
    was = guardrails.get(project_id, scope, target, name).spec.enabled
    view = guardrails.set_enabled(project_id, scope, target, name, enabled, actor=actor())
    state = "enabled" if enabled else "disabled"
    said = state if was != enabled else f"already {state}"
    console.print(f"{said} policy {escape(view.label)}", highlight=False)


@app.command("apply")
def apply(
    file: Path = typer.Option(..., "--file", "-f", help="A policies YAML or JSON file (a list); - for stdin"),
    project: str = project_option(),
    as_json: bool = JSON,
) -> None:
    """Create or replace each policy of a file, all or none; says what changed. Policies left out of the
    file stay: remove them with `fmops guardrails rm`."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    policies = load_policies(text, str(file))
    done = local_platform().guardrails.apply(project_id_of(project), policies, actor=actor())
    if as_json:
        data = [{"change": d.change, "policy": d.policy.public()} for d in done]
        console.print_json(orjson.dumps(data, default=str).decode())
        return
    _print_changes(done)


def _print_changes(done: list[Applied]) -> None:
    for d in done:
        colour = {"created": "green", "updated": "yellow", "unchanged": "dim"}[d.change]
        console.print(f"[{colour}]{d.change:>9}[/{colour}] {escape(d.policy.label)}", highlight=False)
    changed = sum(d.change != "unchanged" for d in done)
    console.print(f"{changed} of {len(done)} policies changed", highlight=False)
