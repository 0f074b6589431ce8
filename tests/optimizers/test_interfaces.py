"""The API, the CLI and the console page of prompt optimisation, on a real server whose worker runs
the job through the gateway (the deterministic upstream of conftest)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stdout

import httpx
import pytest

from optimizers.conftest import Upstream, suite
from support.browser import web_session
from support.gateway import add_models, cli_in_process, openai_model
from support.server import RunningServer

PROMPT = {"name": "echo", "model": "task", "messages": [{"role": "system", "content": "Repeat the text."}]}


@pytest.fixture(scope="module")
def client(sqlite_server: RunningServer, upstream: Upstream) -> Iterator[httpx.Client]:
    models = {alias: openai_model(alias, upstream.url) for alias in ("task", "reflector")}
    add_models(sqlite_server.home, models)
    with sqlite_server.client() as c:
        assert c.post("/api/prompts", json={**PROMPT, "labels": ["production"]}).status_code == 201
        assert (
            c.post("/api/endpoints", json={"name": "echoes", "prompt": "echo", "model": "task"}).status_code
            == 201
        )
        yield c


def wait_done(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/optimizations/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return dict(run)
        time.sleep(0.2)
    raise AssertionError(f"optimisation {run_id} did not finish in {timeout}s")


def test_api_cli_and_console(client: httpx.Client, sqlite_server: RunningServer) -> None:
    bad = client.post("/api/optimizations", json={"prompt": "echo", "suite": suite(5)})
    assert bad.status_code == 400
    assert "at least 8" in bad.json()["error"]["message"]
    body = {"prompt": "echo@production", "suite": suite(), "optimizer_model": "reflector", "budget": 60}
    started = client.post("/api/optimizations", json=body)
    assert started.status_code == 201, started.text
    run = wait_done(client, started.json()["id"])
    assert run["status"] == "succeeded", run
    assert run["pushed_version"] == 2
    candidates = client.get(f"/api/optimizations/{run['id']}/candidates").json()
    assert candidates[1]["opt_score"] == 1.0
    assert candidates[1]["heldout_score"] == 1.0
    diff = client.get(f"/api/optimizations/{run['id']}/diff").json()["diff"]
    assert "+  content: Repeat the user's text in UPPERCASE letters." in diff
    assert client.post(f"/api/optimizations/{run['id']}/cancel").status_code == 409  # finished already
    assert [r["id"] for r in client.get("/api/optimizations", params={"prompt": "echo"}).json()["data"]] == [
        run["id"]
    ]

    from fmops.cli import app

    out = io.StringIO()
    with cli_in_process(sqlite_server.home), redirect_stdout(out):
        app(["prompts", "optimization", str(run["id"]), "--json"], standalone_mode=False)
    shown = json.loads(out.getvalue())
    assert shown["pushed_version"] == 2
    assert len(shown["candidates"]) == len(candidates)

    web, token = web_session(sqlite_server, sqlite_server.admin_key)
    page = web.get(f"/console/optimizations/{run['id']}")
    assert page.status_code == 200
    assert 'data-testid="diff"' in page.text
    assert "Start an A/B experiment with version 2" in page.text
    assert run["id"] in web.get("/console/optimizations").text
    started_ab = web.post(
        f"/console/optimizations/{run['id']}/experiment", data={"endpoint": "echoes", "csrf_token": token}
    )
    assert started_ab.status_code == 303
    endpoint = client.get("/api/endpoints/echoes").json()
    assert [(v["name"], v.get("version")) for v in endpoint["variants"]] == [
        ("control", None),
        ("optimized", 2),
    ]
