"""The `fmops` command: one module per command group, imported when that command runs."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import Any, NoReturn

import typer
from rich.markup import escape

import fmops
from fmops.cli.common import err_console
from fmops.cli.lazy import Lazy, LazyGroup
from fmops.errors import ConfigError, FmopsError

# Every command, in the order `fmops --help` lists them: where it lives and its one-line help.
# Its module is imported only when the command runs (tests/cli/test_lazy_cli.py keeps the help
# here equal to the command's own).
COMMANDS = {
    "up": Lazy(
        "fmops.cli.up:up",
        "Migrate the database, create the first admin key if needed, start job workers and serve the API.",
    ),
    "worker": Lazy(
        "fmops.cli.worker:worker",
        "Run job workers only (no API): they take queued jobs from the shared database until stopped.",
    ),
    "stats": Lazy(
        "fmops.cli.stats:stats",
        "Requests, errors, latency, tokens, cost, feedback and scores: over time, and by model (or --by).",
    ),
    "select": Lazy(
        "fmops.cli.evals:select",
        "Rank candidate models on a suite by quality, latency and cost; recommend one with the trade-off.",
    ),
    "quickstart": Lazy(
        "fmops.cli.quickstart:quickstart",
        "Run the whole loop on ticket triage: traffic, feedback, data, fine-tune, eval, A/B test, promotion.",
    ),
    "chat": Lazy("fmops.cli.chat:chat", "Chat with a model in the terminal (type /exit or Ctrl-D to leave)."),
    "version": Lazy("fmops.cli:version", "Print the fmops version."),
    "db": Lazy("fmops.cli.db:app", "Metadata database: migrations and status."),
    "keys": Lazy("fmops.cli.keys:app", "API keys: create, list, revoke, set limits."),
    "projects": Lazy("fmops.cli.projects:app", "Projects: create, list, limits, trace retention."),
    "users": Lazy("fmops.cli.users:app", "Users: add to a project with a role."),
    "me": Lazy(
        "fmops.cli.me:app",
        "Your own tailoring of the chat: custom instructions and saved prompts (as your key's user).",
    ),
    "jobs": Lazy("fmops.cli.jobs:app", "Background jobs: list, show, cancel."),
    "models": Lazy(
        "fmops.cli.models:app",
        "Model catalog: list, show, add, remove, pull; a model's loop (traces to promotion).",
    ),
    "traces": Lazy("fmops.cli.traces:app", "Traces: search spans, tail new ones, show a trace."),
    "alerts": Lazy(
        "fmops.cli.alerts:app", "Alerts: rules that post to a webhook when a metric crosses a threshold."
    ),
    "evaluators": Lazy(
        "fmops.cli.evaluators:app",
        "Online evaluators: score sampled live traces (list, create, show, update, delete, scorers).",
    ),
    "eval": Lazy(
        "fmops.cli.evals:app", "Evaluate models, prompts and endpoints on your task (suites, runs, CI gates)."
    ),
    "prompts": Lazy(
        "fmops.cli.prompts:app",
        "Prompt registry: push YAML files as versions, list, show, diff, label, render, export, delete.",
    ),
    "endpoints": Lazy(
        "fmops.cli.endpoints:app",
        "Endpoints: a prompt label + model + guardrails + variants, called as `model=NAME` "
        "(create, list, show, update, set-weights, delete).",
    ),
    "assistants": Lazy(
        "fmops.cli.assistants:app",
        "Assistants: endpoints published to the chat with a description, starters and who may use them "
        "(list, publish, rm).",
    ),
    "guardrails": Lazy(
        "fmops.cli.guardrails:app",
        "Guardrails: checks on input and output, run as policies on the project, a model or an endpoint "
        "(list, policies, add, rm, enable, disable, apply).",
    ),
    "data": Lazy(
        "fmops.cli.data:app",
        "Datasets: import files as versions, list, show, head, diff, export, delete, sweep.",
    ),
    "queues": Lazy(
        "fmops.cli.queues:app", "Annotation queues: create from traces, list, show, export, delete."
    ),
    "finetune": Lazy("fmops.cli.finetune:app", "Fine-tune models (LoRA SFT, DPO) on dataset versions."),
}


class Commands(LazyGroup):
    lazy = COMMANDS


app = typer.Typer(
    name="fmops",
    cls=Commands,
    help="fmops: serve, trace, curate, fine-tune, evaluate and promote foundation models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    # A callback makes `app` a group although no command is registered on it: all are lazy.
    pass


def version() -> None:
    """Print the fmops version."""
    print(fmops.__version__)


# Usage errors (unknown command, bad option value) are click exceptions, from click itself or from
# the copy of click that newer Typer bundles; Typer exports only BadParameter, so find its base there.
_ClickException: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the terminal width; the message is plain text, never Rich markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _few_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); a command's
    short-lived threads (a job's runner, the trace writer, executors) each leave one partly used, so
    their memory is never handed back. Two arenas serve a command's few threads as well."""
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
            ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def entry() -> NoReturn:
    """The `fmops` console script: `main`, then a quick exit."""
    try:
        main()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: object) -> NoReturn:
    """Exit now, without tearing the interpreter down when nothing else is running.

    Python's exit frees every object of the ~1,000 modules a command loaded, one by one: ~0.1 s of
    every command (0.3-0.4 s on this 2-core machine when loaded), which a CI gate calling `fmops
    eval run` pays each time. With the main thread the only one left, there is nothing that tear-down
    would finish: the exit functions (logging's flush among them) run, the output is flushed, and
    the process ends. Any other thread still alive gets the ordinary exit, which waits for it."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = code if isinstance(code, int) else 0
    if threading.active_count() > 1:
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away (`| head`), a closed stream
            status = status or 1
    os._exit(status)


def main() -> None:
    """The command line: user mistakes print one line and exit non-zero, never a traceback."""
    _few_malloc_arenas()
    # Start-up allocates ~1,000 modules' worth of objects, none of them garbage: collecting meanwhile
    # only costs time (~0.15 s of `fmops eval run`'s start). Collection resumes once the command's
    # module is loaded (LazyGroup.resolve_command), what is loaded by then frozen out of later passes.
    gc.disable()
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
