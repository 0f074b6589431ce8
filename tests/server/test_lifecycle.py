"""Process life of `fmops up`: health without a key, clean SIGTERM, no workers left, resume after restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from fmops.jobs import JobStatus
from fmops.store import Store
from fmops.store.models import Job
from support.databases import postgres_database
from support.server import RunningServer, start_server


def children(pid: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return {int(p) for p in out.stdout.split()}


def alive(pid: int) -> bool:
    """True while `pid` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def group_members(pgid: int) -> set[int]:
    """Live processes in a process group (the server runs in its own session and group)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.add(int(entry.name))
    return members


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.05)


def terminate(server: RunningServer, timeout: float = 15) -> tuple[int, float]:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=timeout)
    return code, time.monotonic() - started


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
    else:
        with postgres_database() as url:
            yield {"FMOPS_DATABASE_URL": url}


def test_health_checks_need_no_key(sqlite_server: RunningServer) -> None:
    for path in ("/healthz", "/readyz"):
        response = httpx.get(sqlite_server.url + path, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"
        junk = httpx.get(sqlite_server.url + path, headers={"Authorization": "Bearer junk"}, timeout=10)
        assert junk.status_code == 200, "a bad key does not matter where none is needed"
    assert "version" in httpx.get(sqlite_server.url + "/healthz", timeout=10).json()
    assert httpx.get(sqlite_server.url + "/readyz", timeout=10).json()["detail"] == "ok"


def test_sigterm_exits_cleanly_and_takes_the_workers_along(tmp_path: Path) -> None:
    with start_server(tmp_path, {"FMOPS_WORKERS": "2"}) as server:
        wait_until(lambda: server.log_text().count('"job worker started"') == 2, 30, "both workers run")
        workers = children(server.proc.pid)
        assert len(workers) >= 2, workers
        assert all(alive(pid) for pid in workers)

        code, took = terminate(server)

        assert code == 0, server.log_text()[-3000:]
        assert took < 10, f"shutdown took {took:.1f}s"
        wait_until(lambda: not any(alive(pid) for pid in workers), 5, "the workers have exited")
        wait_until(lambda: not group_members(server.proc.pid), 5, "nothing is left in the group")
        log = server.log_text()
        assert log.count('"job worker stopped"') == 2
        assert '"fmops stopped"' in log
        assert "Traceback" not in log
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=2)


def test_job_interrupted_by_shutdown_resumes_from_its_checkpoint(
    tmp_path: Path, db_env: dict[str, str]
) -> None:
    params = {"steps": 24, "step_seconds": 0.1}
    with ExitStack() as stack:
        first = stack.enter_context(start_server(tmp_path, db_env))
        with first.client() as api:
            job = api.post("/api/jobs", json={"kind": "test.count", "params": params}).json()
            wait_until(lambda: api.get(f"/api/jobs/{job['id']}").json()["progress"] >= 0.25, 30, "progress")
        code, _ = terminate(first)
        assert code == 0, first.log_text()[-3000:]
        stack.close()

        # Between the two servers: the job waits in the queue, with its checkpoint and its attempt back.
        store = Store(db_env.get("FMOPS_DATABASE_URL") or f"sqlite:///{tmp_path / 'fmops.db'}")
        try:
            with store.session() as session:
                row = session.get(Job, job["id"])
                assert row is not None
                assert row.status == JobStatus.queued
                assert row.message == "interrupted by shutdown; will resume"
                assert row.attempts == 0, "a shutdown does not use up an attempt"
                assert row.worker_id is None
                assert row.state is not None
                done_before = int(row.state["done"])
        finally:
            store.dispose()
        assert 0 < done_before < params["steps"]

        second = stack.enter_context(start_server(tmp_path, db_env))
        assert second.admin_key == first.admin_key, "a restart keeps the first admin key"
        with second.client() as api:
            wait_until(
                lambda: api.get(f"/api/jobs/{job['id']}").json()["status"] == "succeeded", 30, "it finishes"
            )
            final = api.get(f"/api/jobs/{job['id']}").json()
            lines = [x["line"] for x in api.get(f"/api/jobs/{job['id']}/logs").json()]

    assert final["result"]["counted"] == params["steps"]
    assert final["result"]["resumed_from"] >= done_before > 0
    assert final["attempts"] == 1
    assert final["progress"] == 1.0
    assert f"resuming at step {final['result']['resumed_from']}" in lines
