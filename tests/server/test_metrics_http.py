"""Prometheus metrics at /metrics on a real server: the gateway's calls counted exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.gateway import add_models, gateway_server, openai_model, sdk, wait_for
from support.mock_upstream import MockUpstream
from support.server import RunningServer

MESSAGES: Any = [{"role": "user", "content": "hi"}]
CALLS = 4
STREAMS = 2


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("metrics-http")
    with gateway_server(home) as running:
        add_models(
            home,
            {
                "small": openai_model(
                    "upstream-small", mock.url, "--input-price", "1", "--output-price", "2"
                ),
                "broken": openai_model("always-400", mock.url),
            },
        )
        yield running


def samples(
    server: RunningServer, key: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with server.client(key) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_calls_are_counted_by_model_and_status(server: RunningServer) -> None:
    with sdk(server) as client:
        usage_in = usage_out = 0
        for _ in range(CALLS):
            done = client.chat.completions.create(model="small", messages=MESSAGES)
            assert done.usage is not None
            usage_in += done.usage.prompt_tokens
            usage_out += done.usage.completion_tokens
        for _ in range(STREAMS):
            chunks = list(client.chat.completions.create(model="small", messages=MESSAGES, stream=True))
            assert chunks
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="broken", messages=MESSAGES)

    total = CALLS + STREAMS
    assert wait_for(
        lambda: value(samples(server), "fmops_requests_total", model="small", status="ok") == total
    )
    found = samples(server)
    assert value(found, "fmops_requests_total", model="broken", status="error") == 1
    assert value(found, "fmops_requests_total", model="small", status="error") == 0
    assert value(found, "fmops_request_latency_seconds_count", model="small") == total
    assert value(found, "fmops_request_latency_seconds_bucket", model="small", le="+Inf") == total
    assert 0 < value(found, "fmops_request_latency_seconds_sum", model="small") < 30
    # Time to first token is measured on streams only.
    assert value(found, "fmops_time_to_first_token_seconds_count", model="small") == STREAMS
    assert value(found, "fmops_tokens_total", model="small", direction="input") >= usage_in > 0
    assert value(found, "fmops_tokens_total", model="small", direction="output") >= usage_out > 0
    assert value(found, "fmops_cost_total", model="small") > 0
    # Every span recorded is written, none dropped, none waiting once the writer caught up.
    assert wait_for(lambda: value(samples(server), "fmops_spans_written_total") == total + 1)
    found = samples(server)
    assert value(found, "fmops_spans_dropped_total") == 0
    assert value(found, "fmops_trace_queue_depth") == 0


def test_metrics_need_an_engineer_key(server: RunningServer) -> None:
    assert httpx.get(server.url + "/metrics").status_code == 401
    with server.client() as admin:
        resp = admin.post("/api/keys", json={"name": "chat", "role": "consumer"})
        assert resp.status_code == 201, resp.text
        consumer = resp.json()["key"]
        resp = admin.post("/api/keys", json={"name": "prometheus", "role": "engineer"})
        engineer = resp.json()["key"]
    with server.client(consumer) as client:
        assert client.get("/metrics").status_code == 403
    assert ("fmops_spans_dropped_total", frozenset()) in samples(server, engineer)
