"""`fmops users`: people and their role in a project."""

from __future__ import annotations

import getpass
import sys

import typer
from sqlalchemy import select

from fmops.auth import Role
from fmops.auth.service import storable
from fmops.cli.common import console, local_platform
from fmops.errors import NotFound, UserError
from fmops.store.models import User

app = typer.Typer(help="Users: add to a project with a role.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="User name"),
    role: Role = typer.Option(Role.consumer, "--role"),
    project: str = typer.Option("default", "--project"),
    email: str | None = typer.Option(None, "--email"),
) -> None:
    """Create a user (or add an existing one) in a project."""
    platform = local_platform()
    with platform.store.session() as session:
        project_id = platform.auth.project_by_name(session, project).id
    platform.auth.create_user(name, role=role, project_id=project_id, email=email)
    console.print(
        f"{name} is now {role} in {project}; give them a key with `fmops keys create --user {name}`"
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; only its line ending is cut (spaces may belong to the password).
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise UserError("the two passwords differ; nothing changed")
    return first


@app.command("set-password")
def set_password(
    name: str = typer.Argument(..., help="User name"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin (for scripts)"
    ),
) -> None:
    """Set a user's password for the web sign-in; their browser sessions end. Asked twice, never echoed."""
    if not password_stdin and not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password on: pipe it in with --password-stdin")
    platform = local_platform()
    with platform.store.session() as session:
        user = session.scalar(select(User).where(User.name == name)) if storable(name) else None
    if user is None:
        raise NotFound(f"no user named {name!r}; create one with `fmops users create`")
    platform.web_sessions.set_password(user.id, _read_password(password_stdin))
    console.print(f"password set for {name}; their web sessions have ended", highlight=False)
