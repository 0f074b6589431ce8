"""The `fmops` console script's exit (`fmops.cli.entry`): it skips the interpreter's tear-down, so
check that nothing a command says is lost, the exit codes stay, and exit functions still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.cli_runs import FMOPS, session_env


def run(home: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(FMOPS), *args] if code is None else [sys.executable, "-c", code, *args]
    return subprocess.run(
        argv, env=session_env(home), cwd=home, capture_output=True, text=True, timeout=120, check=False
    )


def test_output_and_exit_codes_survive_the_quick_exit(tmp_path: Path) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: bad\ncases: [{input: x}]\ntargets: [{model: nope}]\nscorers: [exact_match]\n")
    refused = run(tmp_path, "eval", "run", str(suite), "--json")
    assert refused.returncode == 2, refused.stderr
    assert "no model 'nope' in this project" in refused.stderr
    assert refused.stdout == ""

    listed = run(tmp_path, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.rstrip().endswith("]")  # the whole document, flushed before the exit

    unknown = run(tmp_path, "no-such-command")
    assert unknown.returncode == 2
    assert "No such command" in unknown.stderr


# What `entry` does after a command: exit functions run (logging flushes through one), and a thread
# still working is waited for, as the ordinary exit would.
_AFTER = """
import atexit, sys, threading, time
import fmops.cli

atexit.register(lambda: print("exit function ran", flush=True))
def late():
    time.sleep(0.5)
    print("thread finished", flush=True)
if sys.argv[1] == "thread":
    threading.Thread(target=late).start()
sys.argv = ["fmops", "version"]
fmops.cli.entry()
"""


def test_exit_functions_run_and_live_threads_are_waited_for(tmp_path: Path) -> None:
    alone = run(tmp_path, "alone", code=_AFTER)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[-1] == "exit function ran"

    waited = run(tmp_path, "thread", code=_AFTER)
    assert waited.returncode == 0, waited.stderr
    assert "thread finished" in waited.stdout
    assert "exit function ran" in waited.stdout
