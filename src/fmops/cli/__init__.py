"""The `fmops` command: one module per command group."""

from __future__ import annotations

import sys

import typer

from fmops import __version__
from fmops.cli import db, jobs, keys, models, projects, users
from fmops.cli.chat import chat
from fmops.cli.common import err_console
from fmops.cli.up import up
from fmops.errors import ConfigError, FmopsError

app = typer.Typer(
    name="fmops",
    help="fmops: serve, trace, curate, fine-tune, evaluate and promote foundation models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("up")(up)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(projects.app, name="projects")
app.add_typer(users.app, name="users")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.command("chat")(chat)


@app.command("version")
def version() -> None:
    """Print the fmops version."""
    print(__version__)


def main() -> None:
    """Console entry point: user mistakes print one line and exit non-zero, never a traceback."""
    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        sys.exit(2)
    except FmopsError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
