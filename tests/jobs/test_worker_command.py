"""`fmops worker`: job workers without the API (the worker service of deploy/): it runs a queued job
from the shared database and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fmops.auth import AuthService
from fmops.jobs import JobService, JobStatus
from fmops.store import Store
from support.databases import migrated_sqlite_url

TESTS = Path(__file__).resolve().parents[1]


def test_worker_runs_a_job_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = migrated_sqlite_url(tmp_path)
    store = Store(url)
    try:
        project = AuthService(store).create_project("w").id
        job_id = (
            JobService(store).submit("test.count", {"steps": 2, "step_seconds": 0}, project_id=project).id
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")} | {
            "FMOPS_HOME": str(tmp_path / "home"),
            "FMOPS_DATABASE_URL": url,
            "FMOPS_PLUGINS": '["support.job_kinds"]',
            "FMOPS_JOB_POLL_SECONDS": "0.1",
            "FMOPS_LOG_FORMAT": "console",
            "PYTHONPATH": str(TESTS),
        }
        fmops = Path(sys.executable).with_name("fmops")
        proc = subprocess.Popen(
            [str(fmops), "worker", "--processes", "1"], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while JobService(store).get(job_id, None).status != JobStatus.succeeded:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the worker did not run the job in 60 s"
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "fmops worker is up: 1 job worker processes" in err
        assert "fmops worker stopped" in err
        assert JobService(store).get(job_id, None).result == {"counted": 2, "resumed_from": 0}
    finally:
        store.dispose()
