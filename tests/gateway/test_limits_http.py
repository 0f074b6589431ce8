"""Rate limits, budgets and the response cache as a client sees them: the real server, the official SDK."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.gateway import add_models, gateway_server, openai_model, read_span, sdk
from support.mock_upstream import MockUpstream
from support.server import RunningServer

MESSAGES: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("gateway-limits")
    with gateway_server(home) as running:
        add_models(
            home,
            {
                "cheap": openai_model("ok-cheap", mock.url),
                # 1,000,000 per 1M tokens: one token costs 1.00, so a budget runs out after one call.
                "pricey": openai_model(
                    "ok-pricey", mock.url, "--input-price", "1000000", "--output-price", "1000000"
                ),
                "cached": openai_model("ok-cached", mock.url, "--cache-ttl", "60"),
            },
        )
        yield running


def new_key(server: RunningServer, name: str, limits: dict[str, Any]) -> str:
    with server.client() as admin:
        created = admin.post("/api/keys", json={"name": name, "role": "consumer"})
        assert created.status_code == 201, created.text
        body = created.json()
        changed = admin.patch(f"/api/keys/{body['id']}/limits", json=limits)
        assert changed.status_code == 200, changed.text
    return str(body["key"])


def test_requests_per_minute_limit_answers_429_with_retry_after(server: RunningServer) -> None:
    client = sdk(server, new_key(server, "rpm", {"rpm_limit": 2}))
    for _ in range(2):
        client.chat.completions.create(model="cheap", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="cheap", messages=MESSAGES)
    retry_after = float(caught.value.response.headers["retry-after"])
    assert 0 < retry_after <= 120  # sliding window: at most two windows away
    assert "requests per minute" in caught.value.message


def test_budget_refuses_calls_once_spent(server: RunningServer) -> None:
    key = new_key(server, "budget", {"budget": 1.0, "budget_period": "month"})
    client = sdk(server, key)
    first = client.chat.completions.with_raw_response.create(model="pricey", messages=MESSAGES)
    span = read_span(server, first.headers["x-fmops-trace-id"])
    assert span["cost"] > 1.0
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="pricey", messages=MESSAGES)
    assert caught.value.code == "insufficient_quota"
    assert "Budget exhausted" in caught.value.message
    # Spend is persisted next to the spans, so the budget survives a restart.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with sqlite3.connect(server.home / "fmops.db") as db:
            rows = db.execute(
                "SELECT cost FROM spend WHERE scope LIKE 'key:%' AND period != 'total'"
            ).fetchall()
        if any(cost > 1.0 for (cost,) in rows):
            break
        time.sleep(0.1)
    else:
        pytest.fail("spend was not persisted")


def test_cache_answers_identical_requests_without_the_upstream(
    server: RunningServer, mock: MockUpstream
) -> None:
    client = sdk(server)
    before = len([r for r in mock.state.requests if r["body"].get("model") == "ok-cached"])
    first = client.chat.completions.with_raw_response.create(model="cached", messages=MESSAGES, temperature=0)
    second = client.chat.completions.with_raw_response.create(
        model="cached", messages=MESSAGES, temperature=0
    )
    assert first.headers["x-fmops-cache"] == "miss"
    assert second.headers["x-fmops-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    after = len([r for r in mock.state.requests if r["body"].get("model") == "ok-cached"])
    assert after - before == 1
    hit = read_span(server, second.headers["x-fmops-trace-id"])
    assert hit["cache_hit"] == 1
    assert hit["cost"] == 0


def test_cache_is_opt_in_per_request(server: RunningServer, mock: MockUpstream) -> None:
    body = {"model": "cheap", "messages": MESSAGES, "cache": {"ttl": 30}}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}) as http:
        miss = http.post("/v1/chat/completions", json=body)
        hit = http.post("/v1/chat/completions", json=body)
        streamed = http.post("/v1/chat/completions", json={**body, "stream": True})
        plain = http.post("/v1/chat/completions", json={"model": "cheap", "messages": MESSAGES})
    assert (miss.headers["x-fmops-cache"], hit.headers["x-fmops-cache"]) == ("miss", "hit")
    assert hit.json()["choices"][0]["message"] == miss.json()["choices"][0]["message"]
    assert streamed.headers["x-fmops-cache"] == "hit"
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert plain.headers["x-fmops-cache"] == "miss"


def test_a_refused_call_names_its_span(server: RunningServer) -> None:
    client = sdk(server, new_key(server, "traced", {"rpm_limit": 1}))
    client.chat.completions.create(model="cheap", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="cheap", messages=MESSAGES)
    span = read_span(server, caught.value.response.headers["x-fmops-trace-id"])
    assert span["status"] == "error"
    assert "Rate limit" in span["status_message"]
