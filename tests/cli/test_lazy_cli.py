"""`fmops` imports a command's module only when that command runs, lists every command without
importing any, and an eval run imports neither the other commands nor what they need."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import typer

from fmops.cli import COMMANDS, app
from support.cli_runs import session_env
from support.gateway import add_models, openai_model
from support.mock_upstream import MockUpstream

FMOPS = Path(sys.executable).with_name("fmops")
COMMAND_MODULES = {entry.target.partition(":")[0] for entry in COMMANDS.values()} - {"fmops.cli"}

# Runs the CLI in a fresh process: `import fmops.cli`, then each argv in turn, printing after each
# the modules loaded so far (one JSON line per step).
_STEPS = """
import contextlib, io, json, sys
def loaded():
    print(json.dumps(sorted(sys.modules)), flush=True)
import fmops.cli
loaded()
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            fmops.cli.app(args, standalone_mode=False)
        except SystemExit:
            pass
    loaded()
"""


def steps(home: Path, *argvs: list[str]) -> list[set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _STEPS, json.dumps(list(argvs))],
        env=session_env(home, columns=250),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [set(json.loads(line)) for line in done.stdout.splitlines()]


def test_importing_the_cli_and_its_help_load_no_command_module(tmp_path: Path) -> None:
    imported, helped, db_help = steps(tmp_path, ["--help"], ["db", "--help"])
    assert len(COMMAND_MODULES) > 15
    assert not imported & COMMAND_MODULES
    assert not imported & {"sqlalchemy", "pydantic_settings", "numpy", "fastapi"}  # nothing heavy either
    assert not helped & COMMAND_MODULES  # the listing reads the table's help
    assert db_help & COMMAND_MODULES == {"fmops.cli.db"}  # a command loads its own module only


def test_fmops_help_lists_every_command_with_the_commands_own_help(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(FMOPS), "--help"],
        env=session_env(tmp_path, columns=250),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = {}
    for line in done.stdout.partition("─ Commands ─")[2].splitlines():
        if found := re.match(r"^│ (\S+)\s{2,}(.+?)\s*│$", line):
            listed[found[1]] = found[2]
    assert listed == {name: entry.help for name, entry in COMMANDS.items()}
    # The table's help is each command's own first paragraph: loading them all shows no drift.
    root = typer.main.get_command(app)
    for name, entry in COMMANDS.items():
        command = root.commands[name]  # type: ignore[attr-defined]
        own = " ".join((command.help or "").split("\n\n")[0].split())
        assert own == entry.help, name
        assert command.name == name


def test_an_eval_run_loads_only_the_eval_commands_and_what_a_run_needs(
    tmp_path: Path, mock: MockUpstream
) -> None:
    add_models(tmp_path, {"mock-a": openai_model("m1", mock.url)})
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: lean\ncases: [{input: a, expected: b}, {input: c, expected: d}]\n"
        "targets: [{model: mock-a}]\nscorers: [exact_match]\n"
    )
    _, ran = steps(tmp_path, ["eval", "run", str(suite), "--json"])
    assert "fmops.evals.job" in ran  # it did run
    assert ran & COMMAND_MODULES == {"fmops.cli.evals"}
    # Neither the web stack, nor datasets (pyarrow), migrations at the head (alembic), fine-tuning,
    # curation, an OTLP exporter (aiohttp's is the provider's), nor decryption for a keyless model.
    for heavy in ("fastapi", "pyarrow", "alembic", "fmops.finetune", "fmops.curation", "fmops.tracing.otlp"):
        assert heavy not in ran, heavy
    assert "cryptography" not in ran
    assert "jsonschema" not in ran  # no schema in this suite
    # Nor Jinja (no prompt target), Starlette's thread pool (services use asyncio's), the trace
    # explorer's queries: each costs start-up time and memory a CI gate pays on every run.
    for unused in ("jinja2", "starlette", "anyio", "fmops.tracing.query"):
        assert unused not in ran, unused
