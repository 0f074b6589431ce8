"""Run the real `fmops` console script, several commands at once, against a home with known spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fmops.auth import AuthService
from fmops.store import Store, upgrade, utcnow
from support.stats_data import insert_rows, score, span

FMOPS = Path(sys.executable).with_name("fmops")


@dataclass
class Result:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        head = f"fmops {' '.join(self.args)} -> {self.returncode}"
        return f"{head}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def run_all(home: Path, url: str, commands: Sequence[Sequence[str]]) -> list[Result]:
    """Start every command at once, on an 80-column terminal; wait for them all."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FMOPS_") and k not in ("COLUMNS", "FORCE_COLOR")
    }
    env |= {"FMOPS_HOME": str(home), "FMOPS_DATABASE_URL": url, "COLUMNS": "80"}
    procs = [
        subprocess.Popen(
            [str(FMOPS), *args], env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    results = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        results.append(Result(args, proc.returncode, stdout, stderr))
    return results


def prepared(home: Path, url: str) -> str:
    """A migrated home with its default project: three gpt requests 3 h ago, one claude request 30 min ago."""
    store = Store(url)
    try:
        upgrade(store)
        auth = AuthService(store)
        auth.bootstrap(home / "admin.key")
        project = auth.list_projects()[0][0].id
        now = utcnow()
        rows = [
            span(project, now - timedelta(hours=3), model="gpt", latency_ms=v, cost=0.5)
            for v in (100, 200, 300)
        ]
        rows.append(
            span(project, now - timedelta(minutes=30), model="claude", latency_ms=900.0, status="error")
        )
        insert_rows(store, rows, [score(rows[0], "thumbs", 1, source="human")])
    finally:
        store.dispose()
    return project


# Starting the CLI costs seconds of imports: one process runs the commands in order, calling the
# console script's `main()` for each, as `fmops` does.
_SESSION = """
import contextlib, io, json, sys
from fmops.cli import main

results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["fmops", *args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


@dataclass
class Outcome:
    """One command of a session: its arguments, exit code and output."""

    args: Sequence[str]
    code: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        assert self.code == 0, self
        assert "Traceback" not in self.stdout + self.stderr, self
        return self.stdout

    def error_line(self) -> str:
        """The one line a failed command prints: `error: ...` on stderr, nothing on stdout."""
        assert self.code != 0, self
        assert self.stdout == "", self
        [line] = [x for x in self.stderr.splitlines() if not x.startswith("first use:")]
        assert line.startswith("error: "), self
        return line


def session_env(home: Path, columns: int = 100) -> dict[str, str]:
    """The environment of a CLI run on `home` alone (no FMOPS_* of the test process leaks in)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FMOPS_") and k not in ("COLUMNS", "LINES")
    }
    return env | {"FMOPS_HOME": str(home), "COLUMNS": str(columns)}


def run_session(
    env: dict[str, str], commands: Sequence[Sequence[str]], cwd: Path | None = None, timeout: float = 120
) -> list[Outcome]:
    """`fmops` commands run in order, in one process."""
    done = subprocess.run(
        [sys.executable, "-c", _SESSION, json.dumps([list(c) for c in commands])],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [Outcome(commands[i], **raw) for i, raw in enumerate(json.loads(done.stdout))]
