"""Jobs end to end: real `fmops up` servers, their worker processes, the HTTP API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.databases import postgres_database
from support.server import FMOPS, RunningServer, start_server

FINISHED = {"succeeded", "failed", "cancelled"}


def submit(client: httpx.Client, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind}
    if params is not None:
        body["params"] = params
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    return job


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_for(
    client: httpx.Client, job_id: str, statuses: set[str] = FINISHED, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(client, job_id)
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.1)


def logs(client: httpx.Client, job_id: str, after: int = 0) -> list[dict[str, Any]]:
    response = client.get(f"/api/jobs/{job_id}/logs", params={"after": after})
    assert response.status_code == 200, response.text
    lines: list[dict[str, Any]] = response.json()
    return lines


def create_key(server: RunningServer, role: str) -> str:
    with server.client() as admin:
        response = admin.post("/api/keys", json={"name": f"{role}-key", "role": role})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# --- running jobs ---------------------------------------------------------------------------------


def test_count_job_runs_to_success_with_progress(api: httpx.Client) -> None:
    job = submit(api, "test.count", {"steps": 8, "step_seconds": 0.15})
    assert job["params"] == {"steps": 8, "step_seconds": 0.15}
    assert job["progress"] == 0.0

    seen: list[float] = []
    deadline = time.monotonic() + 30
    current = job
    while current["status"] not in FINISHED and time.monotonic() < deadline:
        current = get_job(api, job["id"])
        seen.append(current["progress"])
        time.sleep(0.05)

    assert current["status"] == "succeeded", current
    assert current["progress"] == 1.0
    assert current["result"] == {"counted": 8, "resumed_from": 0}
    assert current["error"] is None
    assert current["attempts"] == 1
    assert current["started_at"] is not None
    assert current["finished_at"] is not None
    assert current["started_at"] <= current["finished_at"]
    assert seen == sorted(seen), "progress never goes backwards"
    assert any(0 < p < 1 for p in seen), f"progress is visible while the job runs: {seen}"
    assert logs(api, job["id"]) == [], "a job that logs nothing has an empty, readable log"


def test_failing_job_records_its_error_and_traceback(api: httpx.Client) -> None:
    job = wait_for(api, submit(api, "test.fail")["id"])

    assert job["status"] == "failed"
    assert job["error"] == "ValueError: this job always fails"
    assert job["attempts"] == 1, "an ordinary exception is not retried"
    assert job["result"] is None
    lines = logs(api, job["id"])
    assert [line["level"] for line in lines] == ["error"]
    assert "Traceback" in lines[0]["line"]
    assert "ValueError: this job always fails" in lines[0]["line"]
    assert logs(api, job["id"], after=lines[-1]["id"]) == []


def test_transient_failure_is_retried_and_succeeds(api: httpx.Client) -> None:
    job = wait_for(api, submit(api, "test.flaky")["id"])

    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"] == {"ok": True}
    lines = logs(api, job["id"])
    assert [(x["level"], x["line"]) for x in lines] == [("warning", "transient failure: first attempt fails")]


def test_worker_death_is_survived_by_restart_and_reaping(server: RunningServer, api: httpx.Client) -> None:
    started_before = server.log_text().count('"job worker started"')
    job = submit(api, "test.die")

    # The handler kills its worker; the supervisor starts another, which finds the job silent for
    # FMOPS_JOB_STALE_SECONDS (3 s in test servers), queues it again and runs attempt 2.
    done = wait_for(api, job["id"], timeout=45)

    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["result"] == {"survived": True}
    lines = [x["line"] for x in logs(api, job["id"])]
    assert any("stopped responding; retrying" in line for line in lines), lines
    log = server.log_text()
    assert "job worker exited; starting a new one" in log
    assert log.count('"job worker started"') > started_before


def test_cancel_running_job(api: httpx.Client) -> None:
    job = submit(api, "test.count", {"steps": 200, "step_seconds": 0.1})
    deadline = time.monotonic() + 30
    while (current := get_job(api, job["id"]))["progress"] == 0:
        assert time.monotonic() < deadline, current
        time.sleep(0.05)

    response = api.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 200, response.text
    asked = response.json()
    assert asked["status"] == "running"
    assert asked["cancel_requested"] is True

    done = wait_for(api, job["id"], timeout=15)
    assert done["status"] == "cancelled"
    assert 0 < done["progress"] < 1
    assert done["finished_at"] is not None
    assert done["result"] is None

    again = api.post(f"/api/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]["message"]


def test_cancel_queued_job_while_the_worker_is_busy(api: httpx.Client) -> None:
    busy = submit(api, "test.count", {"steps": 100, "step_seconds": 0.05})
    wait_for(api, busy["id"], {"running"})
    waiting = submit(api, "test.count", {"steps": 1})

    response = api.post(f"/api/jobs/{waiting['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert cancelled["message"] == "cancelled before it started"

    api.post(f"/api/jobs/{busy['id']}/cancel")
    assert wait_for(api, busy["id"])["status"] == "cancelled"
    final = get_job(api, waiting["id"])
    assert (final["status"], final["attempts"], final["started_at"]) == ("cancelled", 0, None)


# --- refusals -------------------------------------------------------------------------------------


def test_kinds_are_listed_with_their_params_schema(api: httpx.Client) -> None:
    response = api.get("/api/jobs/kinds")
    assert response.status_code == 200
    kinds = {k["name"]: k for k in response.json()}
    assert {"test.count", "test.fail", "test.flaky", "test.die"} <= set(kinds)
    assert kinds["test.count"]["params_schema"]["properties"]["steps"]["maximum"] == 10_000
    assert kinds["test.fail"]["params_schema"] is None


def test_unknown_kind_is_refused_with_the_known_kinds(api: httpx.Client) -> None:
    response = api.post("/api/jobs", json={"kind": "no.such.kind"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "kind"
    assert "unknown job kind 'no.such.kind'" in error["message"]
    for known in ("test.count", "test.fail", "test.flaky", "test.die"):
        assert known in error["message"]


@pytest.mark.parametrize(
    ("kind", "params", "mentions"),
    [
        ("test.count", {"steps": 0}, "steps"),
        ("test.count", {"steps": "many"}, "steps"),
        ("test.count", {"steps": 5, "step_seconds": 99}, "step_seconds"),
        ("test.fail", {"unexpected": 1}, "takes no params"),
    ],
)
def test_bad_params_are_refused(api: httpx.Client, kind: str, params: dict[str, Any], mentions: str) -> None:
    before = len(api.get("/api/jobs", params={"limit": 500}).json()["data"])
    response = api.post("/api/jobs", json={"kind": kind, "params": params})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "params"
    assert mentions in error["message"]
    assert len(api.get("/api/jobs", params={"limit": 500}).json()["data"]) == before, "nothing was queued"


def test_consumer_key_may_not_touch_jobs(server: RunningServer, api: httpx.Client) -> None:
    job = submit(api, "test.count", {"steps": 1, "step_seconds": 0})
    with server.client(create_key(server, "consumer")) as consumer:
        calls = [
            consumer.get("/api/jobs"),
            consumer.get("/api/jobs/kinds"),
            consumer.post("/api/jobs", json={"kind": "test.count"}),
            consumer.get(f"/api/jobs/{job['id']}"),
            consumer.get(f"/api/jobs/{job['id']}/logs"),
            consumer.post(f"/api/jobs/{job['id']}/cancel"),
        ]
    for response in calls:
        assert response.status_code == 403, (response.request.url, response.text)
        assert response.json()["error"]["type"] == "permission_error"
    wait_for(api, job["id"])


def test_engineer_key_may_run_jobs(server: RunningServer) -> None:
    with server.client(create_key(server, "engineer")) as engineer:
        job = wait_for(engineer, submit(engineer, "test.count", {"steps": 1, "step_seconds": 0})["id"])
        assert job["status"] == "succeeded"
        listed = engineer.get("/api/jobs", params={"kind": "test.count", "status": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed["data"]]
    assert all(j["kind"] == "test.count" and j["status"] == "succeeded" for j in listed["data"])


def test_list_pages_through_every_job(api: httpx.Client) -> None:
    mine = {submit(api, "test.count", {"steps": 1, "step_seconds": 0})["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/jobs", params=params).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert mine <= set(seen)
    assert len(seen) == len(set(seen)), "no job appears on two pages"
    assert seen == sorted(seen, reverse=True)
    for job_id in mine:
        wait_for(api, job_id)


# --- the CLI on the same FMOPS_HOME ---------------------------------------------------------------


def cli_env(server: RunningServer, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env["FMOPS_HOME"] = str(server.home)
    if database_url:
        env["FMOPS_DATABASE_URL"] = database_url
    env["COLUMNS"] = "200"
    return env


def fmops(env: dict[str, str], *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run `fmops` commands side by side (each start imports the whole platform; that takes seconds)."""
    procs = [
        subprocess.Popen(
            [str(FMOPS), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    done = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def idle_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, str | None]]:
    """A server with no workers: submitted jobs stay queued until someone cancels them."""
    home: Path = tmp_path_factory.mktemp("idle-home")
    if request.param == "sqlite":
        with start_server(home, {"FMOPS_WORKERS": "0"}) as running:
            yield running, None
    else:
        with (
            postgres_database() as url,
            start_server(home, {"FMOPS_WORKERS": "0", "FMOPS_DATABASE_URL": url}) as running,
        ):
            yield running, url


def test_no_workers_means_jobs_wait_and_cancel_at_once(idle_server: tuple[RunningServer, str | None]) -> None:
    server, _ = idle_server
    with server.client() as api:
        job = submit(api, "test.count", {"steps": 1})
        time.sleep(1.0)
        assert get_job(api, job["id"])["status"] == "queued"
        response = api.post(f"/api/jobs/{job['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert get_job(api, job["id"])["status"] == "cancelled"


def test_cli_lists_shows_and_cancels_the_servers_jobs(idle_server: tuple[RunningServer, str | None]) -> None:
    server, url = idle_server
    env = cli_env(server, url)
    with server.client() as api:
        first = submit(api, "test.count", {"steps": 3})
        second = submit(api, "test.fail")

        listed, only, shown = fmops(
            env,
            ["jobs", "list", "--json"],
            ["jobs", "list", "--json", "--kind", "test.fail", "--status", "queued"],
            ["jobs", "show", first["id"]],
        )
        assert listed.returncode == 0, listed.stderr
        rows = {row["id"]: row for row in json.loads(listed.stdout)}
        assert rows[first["id"]]["kind"] == "test.count"
        assert rows[first["id"]]["status"] == "queued"
        assert rows[second["id"]]["kind"] == "test.fail"

        assert only.returncode == 0, only.stderr
        filtered = [row["id"] for row in json.loads(only.stdout)]
        assert second["id"] in filtered
        assert first["id"] not in filtered

        assert shown.returncode == 0, shown.stderr
        assert first["id"] in shown.stdout
        assert "test.count" in shown.stdout
        assert "queued" in shown.stdout
        assert "'steps': 3" in shown.stdout

        [cancelled] = fmops(env, ["jobs", "cancel", first["id"]])
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"job {first['id']}: cancelled" in cancelled.stdout
        assert get_job(api, first["id"])["status"] == "cancelled", "the server sees the CLI's change"

        again, missing = fmops(env, ["jobs", "cancel", first["id"]], ["jobs", "show", "0" * 32])
        assert again.returncode == 1
        assert "already cancelled" in again.stderr
        assert "Traceback" not in again.stderr
        assert missing.returncode == 1
        assert "no job with id" in missing.stderr
        api.post(f"/api/jobs/{second['id']}/cancel")
