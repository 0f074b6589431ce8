"""An import killed mid-write (SIGKILL) leaves no version and nothing a reader could mistake for one;
`fmops data sweep` removes what the dead writer left. A 2 GB file that is not JSON Lines is refused
at its first line without being read whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli_runs import run_session, session_env

FMOPS = Path(sys.executable).with_name("fmops")


def _big_jsonl(path: Path, records: int) -> None:
    line = {"messages": [{"role": "user", "content": "q " * 40}, {"role": "assistant", "content": "a " * 80}]}
    template = json.dumps({**line, "metadata": {"i": 0}})[:-3]  # ends with `"i": `
    with path.open("w") as out:
        out.writelines(f"{template}{i}}}}}\n" for i in range(records))


@pytest.mark.slow
def test_a_killed_import_leaves_no_version(tmp_path: Path) -> None:
    data = tmp_path / "big.jsonl"
    _big_jsonl(data, 150_000)
    env = session_env(tmp_path)
    [ready] = run_session(env, [["data", "list"]], cwd=tmp_path)  # the home exists, migrated
    ready.ok()
    proc = subprocess.Popen(
        [str(FMOPS), "data", "import", str(data), "--name", "killed"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    artifacts = tmp_path / "artifacts"
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in artifacts.rglob("*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # well into writing the file
    assert proc.poll() is None, "the import finished before it could be killed: make the file bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    left = [p for p in artifacts.rglob("*") if p.is_file()]
    assert left, "the writer had started"
    assert all(p.name.endswith(".partial") for p in left)  # no file under a version's key
    listed, shown, swept, fresh, after = run_session(
        env,
        [
            ["data", "list", "--json"],
            ["data", "show", "killed"],
            ["data", "sweep", "--older-than", "0"],
            ["data", "sweep", "--older-than", "0"],
            ["data", "list", "--json"],
        ],
        cwd=tmp_path,
    )
    assert json.loads(listed.ok()) == []
    assert "no dataset 'killed'" in shown.error_line()
    assert f"removed {len(left)} file(s)" in swept.ok()
    assert "removed 0 file(s)" in fresh.ok()
    assert not [p for p in artifacts.rglob("*") if p.is_file()]
    assert json.loads(after.ok()) == []


def test_a_2gb_file_is_not_read_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as out:  # sparse: 2 GB of NUL bytes and no newline, instantly made
        out.truncate(2 * 1024**3)
    started = time.monotonic()
    [outcome] = run_session(
        session_env(tmp_path), [["data", "import", str(huge), "--name", "huge"]], cwd=tmp_path
    )
    assert "line 1 of huge.jsonl is longer than 64 MiB" in outcome.error_line()
    assert time.monotonic() - started < 30
