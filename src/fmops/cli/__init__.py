"""The `fmops` command: one module per command group."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.markup import escape

from fmops import __version__
from fmops.cli import (
    alerts,
    data,
    db,
    endpoints,
    evals,
    evaluators,
    finetune,
    jobs,
    keys,
    models,
    projects,
    prompts,
    queues,
    traces,
    users,
)
from fmops.cli.chat import chat
from fmops.cli.common import err_console
from fmops.cli.stats import stats
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
app.add_typer(traces.app, name="traces")
app.command("stats")(stats)
app.add_typer(alerts.app, name="alerts")
app.add_typer(evaluators.app, name="evaluators")
app.add_typer(evals.app, name="eval")
app.command("select")(evals.select)
app.add_typer(prompts.app, name="prompts")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(data.app, name="data")
app.add_typer(queues.app, name="queues")
app.add_typer(finetune.app, name="finetune")
app.command("chat")(chat)


@app.command("version")
def version() -> None:
    """Print the fmops version."""
    print(__version__)


# Usage errors (unknown command, bad option value) are click exceptions, from click itself or from
# the copy of click that newer Typer bundles; Typer exports only BadParameter, so find its base there.
_ClickException: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the terminal width; the message is plain text, never Rich markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: user mistakes print one line and exit non-zero, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except _ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(exc.exit_code)  # Typer has printed the help already
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except ConfigError as exc:
        _fail(exc.message, 2)
    except FmopsError as exc:
        _fail(exc.message, 1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
