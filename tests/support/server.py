"""Run a real `fmops up` process for HTTP tests; it stops when the test module ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TESTS_DIR = Path(__file__).resolve().parents[1]
FMOPS = Path(sys.executable).with_name("fmops")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    home: Path
    admin_key: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, key: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_env(home: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    keep = ("FMOPS_TEST_",)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_") or k.startswith(keep)}
    env.update(
        {
            "FMOPS_HOME": str(home),
            "FMOPS_PORT": str(port),
            "FMOPS_HOST": "127.0.0.1",
            "FMOPS_PLUGINS": '["support.job_kinds"]',
            "FMOPS_JOB_HEARTBEAT_SECONDS": "0.5",
            "FMOPS_JOB_STALE_SECONDS": "3",
            "FMOPS_JOB_POLL_SECONDS": "0.2",
            "FMOPS_SHUTDOWN_GRACE_SECONDS": "10",
            "PYTHONPATH": str(TESTS_DIR) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    env.update(extra or {})
    return env


def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fmops up exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"fmops up did not become ready in {timeout}s:\n{log_path.read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # started in its own session: its workers too
            except (ProcessLookupError, PermissionError):
                proc.kill()  # not a group leader
            proc.wait()
    return proc.returncode


# A port free_port() saw free can be taken before the server binds it (an outgoing connection of
# another test worker draws from the same range); the server then exits at once saying so.
PORT_TAKEN = "address already in use"
PORT_ATTEMPTS = 3


def _launch(home: Path, extra_env: Mapping[str, str] | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`fmops up` on a free port, ready: its process, URL and log; a port taken meanwhile is retried."""
    log_path = home / "server.log"
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        env = server_env(home, port, extra_env)
        with log_path.open("wb") as log:
            # Own process group, so a hung server and its workers can be killed together.
            proc = subprocess.Popen(
                [str(FMOPS), "up"], env=env, stdout=log, stderr=log, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc, log_path)
        except RuntimeError:
            stop_server(proc)
            if attempt == PORT_ATTEMPTS - 1 or PORT_TAKEN not in log_path.read_text(errors="replace"):
                raise
            continue
        return proc, url, log_path
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def start_server(home: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    proc, url, log_path = _launch(home, extra_env)
    try:
        admin_key = (home / "admin.key").read_text().strip()
        yield RunningServer(url=url, home=home, admin_key=admin_key, proc=proc, log_path=log_path)
    finally:
        stop_server(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind
