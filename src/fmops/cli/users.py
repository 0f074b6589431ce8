"""`fmops users`: people and their role in a project."""

from __future__ import annotations

import typer

from fmops.auth import Role
from fmops.cli.common import console, local_platform

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
