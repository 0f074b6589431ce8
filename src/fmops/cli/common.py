"""What every CLI command shares: settings, a local platform, consistent output."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fmops.errors import UserError

if TYPE_CHECKING:  # settings and the store load when a command first needs them, not for `--help`
    from fmops.platform import Platform
    from fmops.settings import Settings

CANNOT_RUN = 2  # exit code: the command could not run (a CI gate reads 1 as "quality failed")

console = Console()
err_console = Console(stderr=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    from fmops.settings import load_settings

    return load_settings()


@lru_cache(maxsize=1)
def local_platform() -> Platform:
    """Direct access to the store, as the server's operator (whoever can read FMOPS_HOME)."""
    from fmops.platform import Platform
    from fmops.store import upgrade

    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    platform = Platform.build(s, serving=False)  # no metrics or background services: a command runs none
    upgrade(platform.store)
    # The first command on a new home sets it up exactly as the first `fmops up` would.
    if platform.auth.bootstrap(s.admin_key_path):
        err_console.print(
            f"first use: created the default project and an admin key in {s.admin_key_path}", soft_wrap=True
        )
    return platform


def project_id_of(name: str) -> str:
    """The id of a project named on the command line (a clear error when there is none)."""
    platform = local_platform()
    with platform.store.session() as session:
        return platform.auth.project_by_name(session, name).id


def actor() -> str:
    """Who made a change from the terminal: the login name, recorded as author or actor."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container running as an anonymous uid)
        return "operator"


def server_url(explicit: str | None) -> str:
    """The server a command calls: the URL given, else FMOPS_URL, else this machine's FMOPS_HOST/PORT."""
    s = settings()
    return explicit or os.environ.get("FMOPS_URL") or f"http://{s.host}:{s.port}"


def resolve_api_key(explicit: str | None) -> str:
    """The key a command calls the server with: the one given, else the operator's admin key."""
    if explicit:
        return explicit
    path = settings().admin_key_path
    if path.exists():
        return path.read_text().strip()
    raise UserError(
        "no API key: pass --api-key, set FMOPS_API_KEY, or run on the server's machine (admin.key)"
    )


def acting_as(api_key: str | None) -> tuple[str, str]:
    """(project id, key id) of the key a command acts as (default: the admin key)."""
    principal = local_platform().auth.authenticate(resolve_api_key(api_key))
    return principal.project_id, principal.key_id


def cannot_run(message: str) -> typer.Exit:
    """Exit with CANNOT_RUN, the reason on stderr."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(CANNOT_RUN)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.0%}" if 0 <= value <= 1 else f"{value:g}"
    return str(value)


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, as_json: bool) -> None:
    if as_json:
        console.print_json(
            orjson.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str).decode()
        )
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        # Ids are what users copy into the next command: never shortened to fit a narrow terminal.
        table.add_column(column, no_wrap=column == "id", min_width=32 if column == "id" else None)
    for row in rows:
        table.add_row(*(Text(fmt(v)) for v in row))  # names and messages are text, never markup
    console.print(table)


def spec_mapping(path: Path, holds: str) -> dict[str, Any]:
    """The one YAML or JSON mapping of a spec file (`-` reads stdin); `holds` says what it should hold
    (e.g. "an endpoint file holds one mapping (name, prompt, model, ...)") when it is not one."""
    from fmops.prompts.files import parse_documents  # not for `--help`

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    documents = parse_documents(text, str(path))
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise UserError(f"{path}: {holds}")
    document: dict[str, Any] = documents[0]
    return document


def project_option() -> Any:
    """`--project NAME` (the default project when left out), for commands that act in one project."""
    from fmops.auth.service import DEFAULT_PROJECT  # here: importing the CLI loads no database code

    return typer.Option(DEFAULT_PROJECT, "--project", help="Project name")
