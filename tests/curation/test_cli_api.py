"""Curation through a real `fmops up`: the API on each database, and `fmops data curate --wait`, the
console script following the server's workers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.cli_runs import run_session
from support.curation_data import chat
from support.server import RunningServer

RECORDS = [
    chat(f"question number {i} about the weather in city {i % 7} today and tomorrow") for i in range(30)
]
RECORDS += [chat("Question number 3 about the weather in city 3 today and tomorrow!")]  # exact duplicate
RECORDS += [chat("write to ada@example.com for the results of question 12")]
RECIPE = {
    "steps": [{"dedup": {"method": "exact"}}, {"pii": {"action": "mask"}}, {"split": {"validation": 0.2}}]
}


def upload(client: httpx.Client, name: str, records: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    response = client.post(
        "/api/datasets/import", files={"file": ("data.jsonl", body)}, data={"name": name, "kind": "chat"}
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


def test_curate_over_the_api(server: RunningServer) -> None:
    with server.client() as client:
        upload(client, "weather", RECORDS)
        response = client.post("/api/datasets/weather/curate", json={"recipe": RECIPE})
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["kind"] == "datasets.curate"
        assert job["result"]["output"] == "weather@4"
        versions = [client.get(f"/api/datasets/weather/versions/{n}").json() for n in (2, 3, 4)]
        assert [v["counts"]["out"] for v in versions] == [31, 31, 31]
        assert versions[0]["report"]["examples"]["duplicate"][0]["kept_row"] == 3
        assert versions[1]["counts"]["modified"] == {"mask": 1}
        assert versions[2]["report"]["splits"] == {"train": 25, "validation": 6, "test": 0}
        assert [v["parent_id"] for v in versions[1:]] == [versions[0]["id"], versions[1]["id"]]
        rows = client.get("/api/datasets/weather/versions/4/rows", params={"limit": 100}).json()
        assert "ada@example.com" not in json.dumps(rows)
        # The same recipe as YAML text, on a chosen version.
        yaml_text = "steps:\n  - filter: {min_chars: 83}\n"
        response = client.post("/api/datasets/weather/curate", json={"recipe": yaml_text, "version": 1})
        assert response.status_code == 201, response.text
        job = wait_job(client, response.json()["id"])
        assert job["result"]["input"] == "weather@1"
        assert job["result"]["versions"][0]["counts"]["removed"] == {"too_short": 11}
        steps = client.get("/api/curation/steps").json()
        assert [s["name"] for s in steps] == ["decontaminate", "dedup", "filter", "pii", "split", "system"]
        assert "threshold" in next(s for s in steps if s["name"] == "dedup")["options_schema"]["properties"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (
            "/api/datasets/weather-api-bad/curate",
            {
                "recipe": {
                    "steps": [
                        {"dedupe": {}},
                        {"pii": {"action": "erase"}},
                        {"decontaminate": {"against": "x"}},
                    ]
                }
            },
            400,
            "the recipe has 3 problems: step 1: unknown step 'dedupe'",
        ),
        ("/api/datasets/missing/curate", {"recipe": {"steps": [{"dedup": {}}]}}, 404, "missing"),
        ("/api/datasets/weather-api-bad/curate", {"recipe": "steps: ["}, 400, "not valid YAML"),
        (
            "/api/datasets/weather-api-bad/curate",
            {"recipe": {"steps": [{"dedup": {}}]}, "version": 9},
            404,
            "no version 9",
        ),
        ("/api/datasets/weather-api-bad/curate", {"recipe": {"steps": []}, "extra": 1}, 400, "extra"),
    ],
)
def test_bad_requests_are_clear_and_queue_nothing(
    server: RunningServer, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    with server.client() as client:
        if client.get("/api/datasets/weather-api-bad").status_code == 404:
            upload(client, "weather-api-bad", RECORDS[:3])
        before = len(client.get("/api/jobs", params={"kind": "datasets.curate", "limit": 500}).json()["data"])
        response = client.post(path, json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]["message"]
        after = len(client.get("/api/jobs", params={"kind": "datasets.curate", "limit": 500}).json()["data"])
        assert after == before


def test_consumers_may_not_curate(server: RunningServer) -> None:
    with server.client() as admin:
        key = admin.post("/api/keys", json={"name": "curation-consumer", "role": "consumer"}).json()["key"]
    with server.client(key) as client:
        response = client.post("/api/datasets/weather/curate", json={"recipe": RECIPE})
        assert response.status_code == 403


@pytest.mark.slow
def test_cli_curate_waits_and_prints_the_report(sqlite_server: RunningServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_") and k not in ("COLUMNS",)}
    env |= {"FMOPS_HOME": str(sqlite_server.home), "COLUMNS": "200"}
    data = tmp_path / "weather.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps:\n  - dedup: {method: exact}\n  - pii: {action: redact}\n")

    bad = recipe.with_name("bad.yaml")
    bad.write_text("steps:\n  - dedup: {method: exact, threshold: 0.5}\n  - nope: {}\n")
    # One process runs the commands in order: starting the CLI costs about a second each.
    imported, done, shown, refused, missing = run_session(
        env,
        [
            ("data", "import", str(data), "--name", "cli-weather"),
            ("data", "curate", "cli-weather@1", "--recipe", str(recipe), "--wait"),
            ("data", "show", "cli-weather@3"),
            ("data", "curate", "cli-weather", "--recipe", str(bad)),
            ("data", "curate", "cli-weather", "--recipe", str(tmp_path / "none.yaml")),
        ],
    )
    assert imported.code == 0, imported.stderr
    assert done.code == 0, done.stderr
    out = done.stdout
    assert "curating cli-weather@1" in out
    assert "cli-weather@2" in out
    assert "duplicate 1" in out
    assert "redact 1" in out
    assert "row 30 ~ row 3 (same text)" in out
    assert "result: cli-weather@3" in out
    assert '"modified":{"redact":1}' in shown.stdout.replace(" ", "")
    assert refused.code == 1
    assert "error: the recipe has 2 problems" in refused.stderr
    assert "threshold apply to method minhash only" in refused.stderr
    assert missing.code == 1
    assert "no recipe file" in missing.stderr
