"""`fmops up` in a terminal prints readable lines and one line saying which URL to open and where the
admin key is; anywhere else (a pipe, a file, a service manager) it keeps writing JSON."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from fmops.logs import resolve_format
from fmops.server.runner import ready_line
from fmops.settings import load_settings
from support.server import FMOPS, free_port, server_env, stop_server


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_means_readable_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", _Tty()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Tty()) == "json"  # chosen explicitly: kept
    assert resolve_format("console", io.StringIO()) == "console"
    assert load_settings().log_format == "auto"


def test_the_ready_line_names_a_url_to_open_and_the_key(tmp_path: Path) -> None:
    settings = load_settings({"home": tmp_path, "host": "0.0.0.0", "port": 8123})
    assert ready_line(settings) == (
        f"fmops is up: open http://127.0.0.1:8123 (the admin key written to {tmp_path / 'admin.key'}"
        " at first start is gone: ask an admin for a key)"
    )
    (tmp_path / "admin.key").write_text("fmk-x")
    assert ready_line(settings).endswith(f"(the admin key is in {tmp_path / 'admin.key'})")


def _read_line_with(fd: int, needle: bytes, proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
    """What the process wrote up to the end of the line holding `needle`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen or b"\n" not in seen[seen.index(needle) :]:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        assert proc.poll() is None, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            seen += os.read(fd, 65536)
    end = seen.index(b"\n", seen.index(needle))
    return seen[:end].decode(errors="replace")


@pytest.mark.slow
def test_fmops_up_in_a_terminal_prints_readable_lines(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "home", port, {"FMOPS_WORKERS": "0"})
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(FMOPS), "up"], env=env, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        text = _read_line_with(leader, b"fmops is up", proc)
    finally:
        stop_server(proc)
        os.close(leader)
    key = tmp_path / "home" / "admin.key"
    assert f"fmops is up: open http://127.0.0.1:{port} (the admin key is in {key})" in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert not any(line.lstrip().startswith("{") for line in lines), text  # no JSON
    assert any(" INFO  fmops.server.runner: fmops is up" in line for line in lines), text


@pytest.mark.slow
def test_fmops_up_into_a_pipe_stays_json(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "home", port, {"FMOPS_WORKERS": "0"})
    proc = subprocess.Popen([str(FMOPS), "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        found = _read_line_with(proc.stderr.fileno(), b"fmops is up", proc)
    finally:
        stop_server(proc)
    entries = [json.loads(line) for line in found.splitlines() if line.strip()]
    (ready,) = [e for e in entries if e["msg"].startswith("fmops is up")]
    assert ready["msg"] == (
        f"fmops is up: open http://127.0.0.1:{port} (the admin key is in {tmp_path / 'home' / 'admin.key'})"
    )
