"""`fmops keys`: API keys, managed locally by the server's operator."""

from __future__ import annotations

import typer

from fmops.auth import Role
from fmops.cli.common import console, err_console, local_platform, print_rows
from fmops.cli.limits import BUDGET, PERIOD, RPM, TPM, describe_limits, limit_changes

app = typer.Typer(help="API keys: create, list, revoke, set limits.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="A label to tell keys apart"),
    role: Role = typer.Option(Role.consumer, "--role", help="admin, engineer or consumer"),
    project: str = typer.Option("default", "--project", help="Project name"),
    user: str = typer.Option("admin", "--user", help="User the key acts for"),
) -> None:
    """Create a key and print it. It is shown this once; only its hash is stored."""
    key, plaintext = local_platform().auth.create_key(
        name=name, role=role, creator=None, project=project, user=user
    )
    err_console.print(f"created key {key.id} ({role}) for {user} in {project}; it will not be shown again:")
    console.print(plaintext, soft_wrap=True)


@app.command("list")
def list_keys(
    project: str | None = typer.Option(None, "--project", help="Only this project"),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table"),
) -> None:
    """List keys (never their values)."""
    rows = [
        (k.id, k.name, k.prefix + "…", k.role, u, p, k.created_at, k.last_used_at, k.revoked_at)
        for k, u, p in local_platform().auth.list_keys(None, project=project)
    ]
    print_rows(
        "API keys",
        ["id", "name", "prefix", "role", "user", "project", "created", "last used", "revoked"],
        rows,
        as_json=as_json,
    )


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="Key id from `fmops keys list`")) -> None:
    """Revoke a key; it stops working within seconds on every server."""
    key = local_platform().auth.revoke_key(None, key_id)
    console.print(f"revoked key {key.id} ({key.name})")


@app.command("limits")
def limits(
    key_id: str = typer.Argument(..., help="Key id from `fmops keys list`"),
    rpm: str | None = RPM,
    tpm: str | None = TPM,
    budget: str | None = BUDGET,
    period: str | None = PERIOD,
) -> None:
    """Set a key's rate limits and budget; options left out keep their value."""
    changes = limit_changes(rpm, tpm, budget, period)
    key = local_platform().auth.set_key_limits(None, key_id, changes)
    console.print(f"key {key.id} ({key.name}): {describe_limits(key)}", soft_wrap=True)
