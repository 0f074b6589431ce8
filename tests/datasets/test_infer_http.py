"""Batch inference through a real `fmops up` (SQLite) whose workers run the job against the mock
upstream: `POST /api/datasets/{name}/infer`, `fmops data infer --wait` (the console script), and the
dataset page's form and job list in the console (plain HTTP, signed in with a key)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.browser import create_user_key, member_session
from support.cli_runs import run_session
from support.gateway import add_models, openai_model
from support.mock_upstream import MockUpstream
from support.server import RunningServer

REPLY = "Hello from the mock upstream."
RECORDS = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(5)]


def upload(client: httpx.Client, name: str, records: list[dict[str, Any]], kind: str = "chat") -> None:
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    response = client.post(
        "/api/datasets/import", files={"file": ("data.jsonl", body)}, data={"name": name, "kind": kind}
    )
    assert response.status_code == 201, response.text


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


@pytest.fixture(scope="module")
def client(sqlite_server: RunningServer, mock: MockUpstream) -> Iterator[httpx.Client]:
    add_models(sqlite_server.home, {"infer-a": openai_model("m1", mock.url)})
    with sqlite_server.client() as c:
        upload(c, "questions", RECORDS)
        upload(c, "cases", [{"input": "q", "expected": "a"}], kind="eval")
        yield c


def test_infer_over_the_api_makes_a_chat_version(client: httpx.Client, mock: MockUpstream) -> None:
    mock.reset()
    response = client.post("/api/datasets/questions/infer", json={"model": "infer-a", "max_tokens": 8})
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "datasets.infer"
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["output"] == "questions@2"
    assert (job["result"]["ok"], job["result"]["errors"]) == (5, 0)
    version = client.get("/api/datasets/questions/versions/2").json()
    assert version["counts"] == {"in": 5, "out": 5, "ok": 5, "error": 0}
    page = client.get("/api/datasets/questions/versions/2/rows", params={"limit": 10}).json()
    rows = [row["record"] for row in page["rows"]]
    assert [r["messages"][-1]["content"] for r in rows] == [REPLY] * 5
    assert {r["body"]["max_tokens"] for r in mock.state.requests} == {8}
    trace_id = rows[0]["metadata"]["inference"]["trace_id"]
    assert client.get(f"/api/traces/{trace_id}").status_code in (200, 404)  # stored at the writer's flush


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/datasets/missing/infer", {"model": "infer-a"}, 404, "no dataset 'missing'"),
        ("/api/datasets/questions/infer", {"model": "infer-a", "version": 9}, 404, "no version 9"),
        ("/api/datasets/questions/infer", {"model": "infer-b"}, 404, "did you mean 'infer-a'"),
        ("/api/datasets/questions/infer", {"endpoint": "nowhere"}, 404, "no endpoint 'nowhere'"),
        ("/api/datasets/questions/infer", {}, 400, "name a model"),
        ("/api/datasets/questions/infer", {"model": "infer-a", "output": "cases"}, 409, "holds eval records"),
        ("/api/datasets/questions/infer", {"model": "infer-a", "temperature": 5}, 400, "temperature"),
        ("/api/datasets/questions/infer", {"model": "infer-a", "extra": 1}, 400, "extra"),
    ],
)
def test_bad_requests_are_clear_and_queue_nothing(
    client: httpx.Client, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    before = len(client.get("/api/jobs", params={"kind": "datasets.infer", "limit": 500}).json()["data"])
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    after = len(client.get("/api/jobs", params={"kind": "datasets.infer", "limit": 500}).json()["data"])
    assert after == before


def test_consumers_may_not_run_batch_inference(sqlite_server: RunningServer, client: httpx.Client) -> None:
    key = client.post("/api/keys", json={"name": "infer-consumer", "role": "consumer"}).json()["key"]
    with sqlite_server.client(key) as consumer:
        assert consumer.post("/api/datasets/questions/infer", json={"model": "infer-a"}).status_code == 403


def test_the_dataset_page_starts_a_job_and_shows_its_progress(
    sqlite_server: RunningServer, client: httpx.Client
) -> None:
    web = httpx.Client(base_url=sqlite_server.url, timeout=60)
    key = create_user_key(sqlite_server, "infer-eng", "engineer")
    assert web.post("/login", data={"api_key": key, "next": "/"}).status_code == 303
    page = web.get("/console/data/questions")
    assert 'hx-get="/console/data/questions/infer"' in page.text
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found is not None
    headers = {"HX-Request": "true", "X-CSRF-Token": found.group(1)}
    section = web.get("/console/data/questions/infer", headers=headers)
    assert 'value="model:infer-a"' in section.text
    refused = web.post("/console/data/questions/infer", data={"target": "model:nope"}, headers=headers)
    assert refused.status_code == 404
    assert "no model &#39;nope&#39;" in refused.text
    started = web.post(
        "/console/data/questions/infer",
        data={"version": "1", "target": "model:infer-a", "output": "from-console", "max_tokens": "4"},
        headers=headers,
    )
    assert started.status_code == 201, started.text
    job_id = re.search(r'data-job="([0-9a-f]+)"', started.text)
    assert job_id is not None
    assert wait_job(client, job_id.group(1))["status"] == "succeeded"
    listed = web.get("/console/data/questions/infer/jobs", headers=headers).text
    assert 'href="/console/data/from-console/versions/1"' in listed
    assert "5 ok, 0 failed" in listed
    assert "hx-trigger" not in listed  # nothing left to poll
    made = web.get("/console/data/from-console/versions/1").text
    assert "Batch inference" in made
    assert f"/console/traces?tags=job%3A{job_id.group(1)}&amp;spans=all" in made  # the job's calls
    web.close()
    consumer = httpx.Client(base_url=sqlite_server.url, timeout=60)
    key = create_user_key(sqlite_server, "infer-consumer-web", "consumer")
    assert consumer.post("/login", data={"api_key": key, "next": "/"}).status_code == 303
    assert consumer.get("/console/data/questions/infer").status_code == 403
    consumer.close()


def test_a_password_session_runs_the_job_as_its_member(
    sqlite_server: RunningServer, client: httpx.Client
) -> None:
    """A member signed in with a password has no key: the job's calls are made as the member."""
    web, token = member_session(sqlite_server, "infer-member", "engineer", "a long passphrase 2")
    try:
        started = web.post(
            "/console/data/questions/infer",
            data={"target": "model:infer-a", "output": "by-member", "max_tokens": "4"},
            headers={"HX-Request": "true", "X-CSRF-Token": token},
        )
        assert started.status_code == 201, started.text
    finally:
        web.close()
    job_id = re.search(r'data-job="([0-9a-f]+)"', started.text)
    assert job_id is not None
    job = wait_job(client, job_id.group(1))
    assert job["status"] == "succeeded", job
    spans = client.get("/api/traces", params={"tags": f"job:{job_id.group(1)}", "limit": 10}).json()["data"]
    assert {span["user"] for span in spans} == {"infer-member"}, spans
    assert len(spans) == len(RECORDS)


@pytest.mark.slow
def test_cli_infer_waits_and_prints_what_it_made(
    sqlite_server: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_") and k not in ("COLUMNS",)}
    env |= {"FMOPS_HOME": str(sqlite_server.home), "COLUMNS": "200"}
    done, refused, missing, swept = run_session(
        env,
        [
            ("data", "infer", "questions@1", "--model", "infer-a", "--output", "cli-answers", "--wait"),
            ("data", "infer", "questions", "--model", "infer-a", "--endpoint", "x"),
            ("data", "infer", "nothing-here", "--model", "infer-a"),
            ("data", "sweep", "--older-than", "0"),
        ],
    )
    assert done.code == 0, done.stderr
    assert "answering 5 records of questions@1 into cli-answers" in done.stdout
    assert "answered 5 of 5 records, 0 failed" in done.stdout
    assert "result: cli-answers@1" in done.stdout
    assert refused.code == 1
    assert "give an endpoint alone" in refused.stderr
    assert missing.code == 1
    assert "no dataset 'nothing-here'" in missing.stderr
    assert swept.code == 0, swept.stderr  # no chunk is left behind by a finished job
    assert "removed 0 file(s)" in swept.stdout
