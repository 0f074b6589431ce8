"""`fmops projects`: tenancy boundaries."""

from __future__ import annotations

import typer

from fmops.auth import Role
from fmops.cli.common import console, local_platform, print_rows
from fmops.cli.limits import BUDGET, PERIOD, RPM, TPM, describe_limits, limit_changes

app = typer.Typer(help="Projects: create, list, limits, trace retention.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Project name"),
    admin: str = typer.Option("admin", "--admin", help="User who becomes the project's admin"),
) -> None:
    """Create a project and make a user its admin."""
    platform = local_platform()
    project = platform.auth.create_project(name)
    platform.auth.create_user(admin, role=Role.admin, project_id=project.id)
    console.print(f"created project {name} ({project.id}); {admin} is its admin")


@app.command("list")
def list_projects(as_json: bool = typer.Option(False, "--json")) -> None:
    """List every project."""
    rows = [(p.id, p.name, p.retention_days, p.created_at) for p, _ in local_platform().auth.list_projects()]
    print_rows("Projects", ["id", "name", "retention days", "created"], rows, as_json=as_json)


@app.command("limits")
def limits(
    name: str = typer.Argument(..., help="Project name"),
    rpm: str | None = RPM,
    tpm: str | None = TPM,
    budget: str | None = BUDGET,
    period: str | None = PERIOD,
) -> None:
    """Set a project's rate limits and budget (shared by all its keys); options left out keep their value."""
    changes = limit_changes(rpm, tpm, budget, period)
    project = local_platform().auth.set_project_limits(None, changes, project=name)
    console.print(f"project {project.name}: {describe_limits(project)}", soft_wrap=True)


@app.command("retention")
def retention(
    name: str = typer.Argument(..., help="Project name"),
    days: str = typer.Argument(..., help="Days traces are kept (1-36500), or `default` for the setting's"),
) -> None:
    """Set how many days a project's traces are kept before the retention job deletes them."""
    value: int | None = None
    if days != "default":
        try:
            value = int(days)
        except ValueError:
            raise typer.BadParameter(
                f"{days!r} is not a number of days: use e.g. 30, or `default`", param_hint="DAYS"
            ) from None
    platform = local_platform()
    project = platform.auth.set_retention(None, value, project=name)
    if project.retention_days is None:
        default = platform.settings.trace_retention_days
        kept = "forever" if default == 0 else f"{default} days"
        console.print(f"project {project.name}: traces kept for the default, {kept}")
    else:
        console.print(f"project {project.name}: traces kept for {project.retention_days} days")
