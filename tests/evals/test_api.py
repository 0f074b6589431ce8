"""/api/evals on a real server whose workers run the job: a bad suite is one 400 naming every problem;
a good one runs through the gateway to results, comparisons and exports."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from support.gateway import add_models, openai_model
from support.mock_upstream import MockUpstream
from support.server import RunningServer

REPLY = "Hello from the mock upstream."
SUITE = {
    "name": "api",
    "cases": [{"input": f"case {i}", "expected": REPLY} for i in range(6)],
    "targets": [{"model": "api-a"}, {"model": "api-b"}],
    "scorers": [{"name": "regex", "config": {"pattern": "^Hello"}, "threshold": 0.5}],
}


@pytest.fixture(scope="module")
def client(sqlite_server: RunningServer, mock: MockUpstream) -> Iterator[httpx.Client]:
    add_models(
        sqlite_server.home, {"api-a": openai_model("m1", mock.url), "api-b": openai_model("slow-5", mock.url)}
    )
    with sqlite_server.client() as c:
        yield c


def wait_done(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/evals/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def test_a_bad_suite_is_one_400_listing_every_problem(client: httpx.Client) -> None:
    bad = {
        **SUITE,
        "targets": [{"model": "api-z"}],
        "scorers": [{"name": "regx"}],
        "cases": {"dataset": "no"},
    }
    response = client.post("/api/evals/runs", json={"suite": bad})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "suite"
    assert "3 problems" in error["message"]
    assert "did you mean 'regex'" in error["message"]
    yaml_text = client.post("/api/evals/runs", json={"suite": "name: [x"})
    assert yaml_text.status_code == 400
    assert "not valid YAML" in yaml_text.json()["error"]["message"]


def test_a_run_through_the_workers_serves_results_comparisons_and_exports(client: httpx.Client) -> None:
    response = client.post("/api/evals/runs", json={"suite": SUITE, "concurrency": 4})
    assert response.status_code == 201, response.text
    run = wait_done(client, response.json()["id"])
    assert run["status"] == "succeeded", run
    assert [t["score"]["mean"] for t in run["summary"]["targets"]] == [1.0, 1.0]
    page = client.get(f"/api/evals/runs/{run['id']}/results", params={"limit": 5}).json()
    assert page["total"] == 12
    assert len(page["data"]) == 5
    assert page["data"][0]["target"] == "api-a"
    assert page["data"][0]["trace_id"]
    assert client.get(f"/api/evals/runs/{run['id']}/results", params={"status": "error"}).json()["total"] == 0
    compared = client.get(f"/api/evals/runs/{run['id']}/compare").json()
    assert compared[0]["a"] == "api-a"
    assert compared[0]["b"] == "api-b"
    csv = client.get(f"/api/evals/runs/{run['id']}/export", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 13
    listed = client.get("/api/evals/runs").json()["data"]
    assert run["id"] in [r["id"] for r in listed]
    assert client.post(f"/api/evals/runs/{run['id']}/resume").status_code == 409
    assert client.get("/api/evals/runs/0123456789abcdef").status_code == 404
