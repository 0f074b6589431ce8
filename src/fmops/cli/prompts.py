"""`fmops prompts`: the prompt registry, managed locally by the operator (files in git, pushed here)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.text import Text

from fmops.cli import prompts_optimize, prompts_shared, prompts_try
from fmops.cli.common import actor, console, fmt, local_platform, print_rows, project_id_of, project_option
from fmops.errors import UserError
from fmops.prompts.files import dump_yaml, load_specs, parse_documents
from fmops.prompts.schemas import PromptVersionView
from fmops.prompts.service import PromptService

app = typer.Typer(
    help="Prompt registry: push YAML files as versions, list, show, diff, label, render, export, delete.",
    no_args_is_help=True,
)


def _version_options() -> tuple[Any, Any]:
    return (
        typer.Option(None, "--version", "-v", min=1, help="A version number"),
        typer.Option(None, "--label", "-l", help="A label, or `latest` (default: the newest version)"),
    )


VERSION, LABEL = _version_options()
JSON = typer.Option(False, "--json", help="Print JSON")


def _service() -> PromptService:
    platform = local_platform()
    return PromptService(platform.store, platform.catalog)


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _view_data(view: PromptVersionView) -> dict[str, Any]:
    return dataclasses.asdict(view)


@app.command("push")
def push(
    files: list[Path] = typer.Argument(
        ..., help="YAML or JSON files: a prompt, or a list of them as export writes; - for stdin"
    ),
    label: list[str] = typer.Option([], "--label", "-l", help="Also point this label at the version"),
    message: str | None = typer.Option(None, "--message", "-m", help="Why it changed (overrides the file's)"),
    project: str = project_option(),
) -> None:
    """Save each prompt as a new version; a prompt whose content did not change keeps its version."""
    specs = []
    for path in files:  # every file is checked before the first is pushed
        for spec in load_specs(_read(path), str(path)):
            changes: dict[str, Any] = {"labels": [*spec.labels, *(x for x in label if x not in spec.labels)]}
            if message is not None:
                changes["message"] = message
            specs.append(type(spec).model_validate({**spec.model_dump(), **changes}))
    project_id, service = project_id_of(project), _service()
    for spec in specs:
        view, created = service.push(project_id, spec, author=actor(), author_key_id=None)
        state = "new version" if created else "unchanged, version"
        labels = f" ({', '.join(view.labels)})" if view.labels else ""
        console.print(f"{escape(view.name)}: {state} {view.version}{escape(labels)}", highlight=False)


@app.command("list")
def list_prompts(project: str = project_option(), as_json: bool = JSON) -> None:
    """A project's prompts, their newest version and their labels."""
    prompts = _service().list(project_id_of(project))
    if as_json:
        console.print_json(orjson.dumps([dataclasses.asdict(p) for p in prompts], default=str).decode())
        return
    rows = [
        (
            p.name,
            p.latest_version,
            ", ".join(f"{label}={version}" for label, version in p.labels.items()) or "-",
            p.updated_at,
            p.description,
        )
        for p in prompts
    ]
    print_rows("Prompts", ["name", "latest", "labels", "updated", "description"], rows, as_json=False)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Prompt name"),
    version: int | None = VERSION,
    label: str | None = LABEL,
    project: str = project_option(),
    as_json: bool = JSON,
) -> None:
    """One version of a prompt (default: the newest): its templates, model, params and labels."""
    view = _service().get(project_id_of(project), name, version=version, label=label)
    if as_json:
        console.print_json(orjson.dumps(_view_data(view), default=str).decode())
        return
    for key, value in [
        ("name", view.name),
        ("version", view.version),
        ("labels", ", ".join(view.labels) or None),
        ("model", view.model),
        ("params", orjson.dumps(view.params).decode() if view.params else None),
        ("variables", ", ".join(view.variables) or None),
        ("author", view.author),
        ("created", view.created_at),
        ("message", view.message),
    ]:
        console.print(f"[bold]{key:>9}[/bold] {escape(fmt(value))}", highlight=False, soft_wrap=True)
    body: dict[str, Any] = {"messages": view.messages}
    if view.output_schema is not None:
        body["output_schema"] = view.output_schema
    console.print(Text(dump_yaml(body)), soft_wrap=True)


@app.command("versions")
def versions(name: str = typer.Argument(...), project: str = project_option(), as_json: bool = JSON) -> None:
    """Every version of a prompt, newest first."""
    found = _service().versions(project_id_of(project), name)
    if as_json:
        console.print_json(orjson.dumps([_view_data(v) for v in found], default=str).decode())
        return
    rows = [
        (v.version, ", ".join(v.labels) or "-", v.model, v.author, v.created_at, v.message) for v in found
    ]
    print_rows(
        f"Versions of {name}",
        ["version", "labels", "model", "author", "created", "message"],
        rows,
        as_json=False,
    )


@app.command("diff")
def diff(
    name: str = typer.Argument(...),
    a: str = typer.Argument(..., help="Version number or label (the old side)"),
    b: str = typer.Argument(..., help="Version number or label (the new side)"),
    project: str = project_option(),
) -> None:
    """Unified diff of two versions' YAML, e.g. `fmops prompts diff support production 4`."""
    old, new, text = _service().compare(project_id_of(project), name, a, b)
    if not text:
        console.print(f"no difference between versions {old.version} and {new.version}", highlight=False)
        return
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in text.splitlines():
        style = "bold" if line.startswith(("+++", "---")) else styles.get(line[:1])
        console.print(Text(line, style=style or ""), soft_wrap=True)


@app.command("label")
def label(
    name: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1, help="The version the label points at"),
    label: str = typer.Argument(..., help="production, staging, ..."),
    project: str = project_option(),
) -> None:
    """Point a label at a version (create or move it); endpoints serving it switch at once."""
    view = _service().set_label(project_id_of(project), name, label, version, actor=actor())
    console.print(f"{escape(view.name)}: {escape(label)} -> version {view.version}", highlight=False)


@app.command("unlabel")
def unlabel(
    name: str = typer.Argument(...), label: str = typer.Argument(...), project: str = project_option()
) -> None:
    """Remove a label (refused while an endpoint serves it)."""
    version = _service().remove_label(project_id_of(project), name, label, actor=actor())
    console.print(f"{escape(name)}: removed {escape(label)} (was version {version})", highlight=False)


@app.command("export")
def export(
    name: str | None = typer.Argument(None, help="One prompt (default: every prompt)"),
    directory: Path | None = typer.Option(
        None, "--dir", "-d", file_okay=False, help="Write one NAME.yaml per prompt here instead of printing"
    ),
    project: str = project_option(),
) -> None:
    """Prompts as YAML (newest versions, with their labels); `fmops prompts push` reads them back.

    One prompt prints as a mapping, every prompt as a list; --dir writes a file per prompt."""
    text = _service().export(project_id_of(project), name)
    if directory is None:
        sys.stdout.write(text)
        return
    directory.mkdir(parents=True, exist_ok=True)
    [exported] = parse_documents(text, "export")
    for document in exported if isinstance(exported, list) else [exported]:
        path = directory / f"{document['name']}.yaml"
        path.write_text(dump_yaml(document))
        console.print(f"wrote {escape(str(path))}", highlight=False)


def _variables(pairs: list[str], path: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if path is not None:
        documents = parse_documents(_read(path), str(path))
        if len(documents) != 1 or not isinstance(documents[0], dict):
            raise typer.BadParameter("must hold one JSON or YAML object", param_hint="--vars-file")
        values.update(documents[0])
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--var")
        values[key] = value
    return values


@app.command("render")
def render(
    name: str = typer.Argument(...),
    var: list[str] = typer.Option([], "--var", help="KEY=VALUE (repeat for each variable)"),
    vars_file: Path | None = typer.Option(
        None, "--vars-file", dir_okay=False, help="Variables as a JSON or YAML object"
    ),
    version: int | None = VERSION,
    label: str | None = LABEL,
    project: str = project_option(),
    as_json: bool = JSON,
) -> None:
    """Render a version's messages with variables, as the endpoint would send them."""
    values = _variables(var, vars_file)
    view = _service().get(project_id_of(project), name, version=version, label=label)
    messages = view.render(values)
    if as_json:
        console.print_json(orjson.dumps(messages).decode())
        return
    for message in messages:
        console.print(f"[bold]{escape(message['role'])}[/bold]", highlight=False)
        console.print(Text(str(message["content"])), soft_wrap=True)


@app.command("delete")
def delete(name: str = typer.Argument(...), project: str = project_option()) -> None:
    """Delete a prompt with all its versions and labels (refused while an endpoint uses it)."""
    summary = _service().delete(project_id_of(project), name)
    console.print(
        f"deleted prompt {escape(summary.name)} ({summary.latest_version} versions)", highlight=False
    )


prompts_try.register(app)
prompts_shared.register(app)
prompts_optimize.register(app)
