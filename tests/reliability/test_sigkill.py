"""Issue 7, item 12: the server is SIGKILLed under load, again and again, on each backend.

Each life of the server runs chat calls from four clients in strict trace durability (a 2xx only
once the call's span is committed) while a checkpointing job runs in its worker; then the whole
process group is killed without warning and started again on the same database. After the last
kill: SQLite passes `PRAGMA integrity_check` and `foreign_key_check`; PostgreSQL passes amcheck on
every B-tree index; every call that got a 2xx has its span; the spend table, written in the same
transactions as the spans, agrees with them exactly; and the job, interrupted mid-way, resumed from
its checkpoint and succeeded.

tests/gateway/test_durability.py checks one kill on SQLite; this repeats it on both backends with
jobs. Three kills on SQLite and two on PostgreSQL in the suite; FMOPS_TEST_LONG=1 runs ten of each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, text

from support.databases import postgres_database, sqlite_url
from support.gateway import wait_for
from support.mock_upstream import MockUpstream
from support.reliability import LONG, MODELS, RELIABILITY_ENV, Load, add_models, chat_body
from support.server import RunningServer, start_server

# Three kills of the embedded default (SQLite: the file's integrity is ours to keep), two of
# PostgreSQL (its own WAL recovers it; what is checked there is fmops's transactions).
KILLS = {"sqlite": 10 if LONG else 3, "postgresql": 10 if LONG else 2}
LOAD_S = 0.5  # of load in each life, at least, before the kill
JOB_STEPS, STEP_S = 12, 0.1  # over a second of work: it spans several lives

ENV = {
    **RELIABILITY_ENV,
    "FMOPS_WORKERS": "1",
    "FMOPS_TRACE_DURABILITY": "strict",
    "FMOPS_JOB_HEARTBEAT_SECONDS": "0.25",
    "FMOPS_JOB_STALE_SECONDS": "1",
    "FMOPS_JOB_POLL_SECONDS": "0.1",
    # A crash counts as one of the job's attempts (the reaper cannot tell a killed server from a job
    # that kills its worker): allow one per kill.
    "FMOPS_JOB_MAX_ATTEMPTS": str(max(KILLS.values()) + 1),
}


def _chat(client: httpx.Client) -> str | None:
    """The trace id of an answered call; None when the call failed (the server is being killed)."""
    try:
        resp = client.post("/v1/chat/completions", json=chat_body("steady"), timeout=10)
    except httpx.HTTPError:
        time.sleep(0.01)
        return None
    return resp.headers["x-fmops-trace-id"] if resp.status_code == 200 else None


def _job(server: RunningServer, job_id: str) -> dict[str, Any]:
    with server.client() as client:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        return job


@contextlib.contextmanager
def _database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield sqlite_url(folder)
    else:
        with postgres_database() as url:
            yield url


def _life(server: RunningServer, job_id: str, wait_for_job: str | None) -> tuple[list[str | None], float]:
    """Load (and, if asked, wait until the job has "started" or "succeeded"), then SIGKILL it all."""
    with Load(server, _chat, threads=4) as load:
        started = time.monotonic()
        if wait_for_job == "started":
            assert wait_for(lambda: _job(server, job_id)["progress"] > 0, timeout=30, interval=0.05)
        elif wait_for_job == "succeeded":
            done = wait_for(lambda: _job(server, job_id)["status"] == "succeeded", timeout=30, interval=0.05)
            assert done, _job(server, job_id)
        time.sleep(max(0.0, started + LOAD_S - time.monotonic()))
        progress = _job(server, job_id)["progress"]
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
    return list(load.results), progress


def _check_database(url: str, backend: str, answered: set[str], job_id: str) -> dict[str, Any]:
    """The checks after the last kill, on the database itself; returns the job's row."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if backend == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            else:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
                checked = conn.execute(
                    text(
                        "SELECT count(bt_index_check(c.oid, true)) FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                        "WHERE a.amname = 'btree' AND c.relnamespace = 'public'::regnamespace "
                        "AND c.relkind = 'i'"  # a partitioned index ('I') holds none: its partitions do
                    )
                ).scalar_one()
                assert checked > 10  # every index of the schema was checked (an error raises)
            stored = {row[0] for row in conn.execute(text("SELECT trace_id FROM spans"))}
            spans = conn.execute(text("SELECT count(*), sum(input_tokens) FROM spans")).one()
            spend = conn.execute(
                text(
                    "SELECT sum(requests), sum(input_tokens) FROM spend "
                    "WHERE scope LIKE 'project:%' AND period = 'total'"
                )
            ).one()
            query = text("SELECT status, result, attempts FROM jobs WHERE id = :id")
            status, result, attempts = conn.execute(query, {"id": job_id}).one()
    finally:
        engine.dispose()
    missing = answered - stored
    assert not missing, f"{len(missing)} of {len(answered)} answered calls lost their trace"
    assert tuple(spend) == tuple(spans), (spend, spans)  # spans and spend committed together
    return {
        "status": status,
        "result": orjson.loads(result) if isinstance(result, str) else result,
        "attempts": attempts,
    }


def _kill_repeatedly(backend: str, upstream: MockUpstream, folder: Path) -> None:
    """Every life and kill on one backend, then the checks on its database."""
    home = folder / backend
    home.mkdir()
    with _database(backend, folder) as url:
        env = {**ENV, "FMOPS_DATABASE_URL": url}
        answered: set[str] = set()
        attempts = 0
        job_id = ""
        for life in range(KILLS[backend]):
            # The first kill interrupts the job mid-way; the last life sees it through. Lives in
            # between only serve calls (a job worker costs a process start).
            wait = "started" if life == 0 else "succeeded" if life == KILLS[backend] - 1 else None
            workers = {"FMOPS_WORKERS": "1" if wait else "0"}
            with start_server(home, {**env, **workers}) as server:
                if life == 0:
                    add_models(server, upstream.url, {"steady": MODELS["steady"]})
                    with server.client() as client:
                        params = {"steps": JOB_STEPS, "step_seconds": STEP_S}
                        job_id = client.post(
                            "/api/jobs", json={"kind": "test.count", "params": params}
                        ).json()["id"]
                results, progress = _life(server, job_id, wait)
                if life == 0:
                    assert 0 < progress < 1, f"{backend}: the first kill did not interrupt the job"
                answered |= {trace for trace in results if trace}
                attempts += len(results)
        print(f"{backend}: {KILLS[backend]} kills, {len(answered)} of {attempts} calls answered (2xx)")
        assert len(answered) > 20 * KILLS[backend], f"{backend}: the load did not run"
        job = _check_database(url, backend, answered, job_id)
    assert job["status"] == "succeeded", (backend, job)
    assert job["result"]["counted"] == JOB_STEPS
    assert job["result"]["resumed_from"] > 0, (backend, job)  # from its checkpoint, not from zero
    assert job["attempts"] >= 2, (backend, job)


def test_repeated_sigkill_under_load_loses_nothing(upstream: MockUpstream, tmp_path: Path) -> None:
    # The two backends at once: most of a life is waiting for a process to start, and the suite's
    # time is scarce. SQLite's outcome is checked first, so a PostgreSQL that is not there (a skip)
    # does not hide it.
    with ThreadPoolExecutor(2) as pool:
        runs = {b: pool.submit(_kill_repeatedly, b, upstream, tmp_path) for b in ("sqlite", "postgresql")}
    for backend in ("sqlite", "postgresql"):
        runs[backend].result()
