"""Run the real `fmops` console script, several commands at once, against a home with known spans."""

from __future__ import annotations

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
