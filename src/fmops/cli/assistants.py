"""`fmops assistants`: endpoints published to the chat as assistants, managed locally by the operator.

An assistant's spec, in a YAML or JSON file or in flags:

    name: Support helper
    endpoint: support-bot
    description: Answers questions about your orders and returns.
    starters: ["Where is my order?", "How do I return an item?"]
    roles: [consumer]      # consumer: everyone in the project (a role covers those above it)
    users: [alice]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape

from fmops.assistants import AssistantService, AssistantSpec
from fmops.assistants.usage import DEFAULT_WINDOW, usage, window
from fmops.cli.common import (
    actor,
    console,
    local_platform,
    print_rows,
    project_id_of,
    project_option,
    spec_mapping,
)
from fmops.endpoints.schemas import validated
from fmops.errors import UserError

app = typer.Typer(
    help="Assistants: endpoints published to the chat with a description, starters and who may use them "
    "(list, publish, rm).",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON")


def _service() -> AssistantService:
    return AssistantService(local_platform().store)


def _document(path: Path) -> dict[str, Any]:
    return spec_mapping(path, "an assistant file holds one mapping (name, endpoint, description, ...)")


@app.command("list")
def list_assistants(
    with_usage: bool = typer.Option(False, "--usage", help="Add each one's usage over --window"),
    window_name: str = typer.Option(DEFAULT_WINDOW, "--window", help="1h, 24h, 7d or 30d"),
    project: str = project_option(),
    as_json: bool = JSON,
) -> None:
    """The project's assistants: the endpoint each calls and who may use it (and its usage)."""
    project_id = project_id_of(project)
    span = window(window_name)
    views = _service().list(project_id)
    shown: list[dict[str, Any]] = []
    for view in views:
        row = view.public()
        if with_usage:
            row["usage"] = usage(
                local_platform().store, project_id, view.name, view.endpoint, span=span
            ).public()
        shown.append(row)
    if as_json:
        console.print_json(orjson.dumps(shown, default=str).decode())
        return
    columns = ["name", "endpoint", "roles", "users", "starters", "description"]
    rows: list[tuple[Any, ...]] = [
        (
            v.name,
            v.endpoint,
            ", ".join(v.roles) or "-",
            ", ".join(v.users) or "-",
            len(v.starters),
            v.description,
        )
        for v in views
    ]
    if with_usage:
        columns += ["conversations", "answers", "users in", "rated", "up"]
        rows = [
            (
                *r,
                s["conversations"],
                s["answers"],
                s["users"],
                _share(s["rated_share"]),
                _share(s["up_share"]),
            )
            for r, s in zip(rows, (row["usage"] for row in shown), strict=True)
        ]
    print_rows("Assistants", columns, rows, as_json=False)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@app.command("publish")
def publish(
    name: str | None = typer.Argument(None, help="The assistant's name (or `name:` in the file)"),
    file: Path | None = typer.Option(None, "-f", "--file", help="The spec, YAML or JSON; - for stdin"),
    endpoint: str | None = typer.Option(None, "--endpoint", help="The endpoint it calls"),
    description: str | None = typer.Option(None, "--description", help="What it is for, shown in the chat"),
    starters: list[str] | None = typer.Option(None, "--starter", help="A starter prompt (repeat for more)"),
    roles: list[str] | None = typer.Option(
        None, "--role", help="A role that may use it (repeat); consumer: everyone"
    ),
    users: list[str] | None = typer.Option(None, "--user", help="A user who may use it (repeat)"),
    project: str = project_option(),
) -> None:
    """Publish an endpoint to the chat as an assistant, or replace the one of that name (flags
    override the file's fields)."""
    data: dict[str, Any] = _document(file) if file is not None else {}
    flags = {"name": name, "endpoint": endpoint, "description": description}
    data |= {key: value for key, value in flags.items() if value is not None}
    lists = {"starters": starters, "roles": roles, "users": users}
    data |= {key: value for key, value in lists.items() if value}
    if "name" not in data:
        raise typer.BadParameter(
            "name the assistant (an argument, or `name:` in the file)", param_hint="NAME"
        )
    try:
        spec = validated(AssistantSpec, data)
    except UserError as exc:
        raise UserError(
            f"{file}: {exc.message}" if file is not None else exc.message, param=exc.param
        ) from None
    change, view = _service().publish(project_id_of(project), spec, actor=actor())
    console.print(
        f"{change} assistant {escape(view.name)} (endpoint {escape(view.endpoint)})", highlight=False
    )


@app.command("rm")
def remove(
    name: str = typer.Argument(..., help="The assistant's name"), project: str = project_option()
) -> None:
    """Take an assistant out of the chat; its conversations and their traces stay."""
    view = _service().unpublish(project_id_of(project), name)
    console.print(f"removed assistant {escape(view.name)}", highlight=False)
