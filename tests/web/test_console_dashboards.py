"""The dashboards page on a real server: real gateway calls and feedback drawn as uPlot charts.

Gateway calls through the mock upstream (plain and streamed, one failing) with thumbs given through
the API, plus a day of recorded history (another model, judge scores) so every chart has a shape.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from fmops.stats import Dimension, StatsService
from fmops.store import Store, utcnow
from fmops.web.routers.console_dashboards import group_data
from support.browser import create_user_key, screenshot, sign_in
from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import MockUpstream
from support.server import RunningServer
from support.stats_data import insert_rows, score, span

JSON = {"accept": "application/json"}
HISTORY = 240  # recorded requests of "history-model" over the last 24 h, none in the last hour
CALLS = 4  # gateway calls to "small" (2 streamed), plus one failing call to "broken"


@dataclass
class World:
    server: RunningServer
    engineer: str  # an engineer's key
    consumer: str


def _history(project: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(5)
    now = utcnow()
    spans, scores = [], []
    for n in range(HISTORY):
        start = now - timedelta(hours=1, minutes=5) - timedelta(seconds=rng.random() * 22 * 3600)
        latency = rng.lognormvariate(6, 0.5)
        root = span(
            project,
            start,
            model="history-model",
            endpoint="support-bot",
            latency_ms=latency,
            ttft_ms=latency / 4,
            input_tokens=rng.randrange(50, 400),
            output_tokens=rng.randrange(20, 200),
            cost=rng.random() / 200,
            status="error" if n % 25 == 0 else "ok",
        )
        spans.append(root)
        if n % 4 == 0:
            scores.append(score(root, "thumbs", 1.0 if n % 12 else -1.0, source="human"))
        if n % 3 == 0:
            scores.append(score(root, "number", rng.randint(2, 5) / 5, source="evaluator", name="judge"))
    return spans, scores


@contextmanager
def _signed_in(server: RunningServer, key: str) -> Iterator[httpx.Client]:
    """A client with a browser's session cookie (the web routes take no API key)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/login", data={"api_key": key}).status_code == 303
        yield client


def _data(client: httpx.Client, route: str = "data", **params: str) -> dict[str, Any]:
    response = client.get(f"/console/dashboards/{route}", params=params, headers=JSON)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def world(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("dashboards")
    with gateway_server(home) as server:
        add_models(
            home,
            {
                "small": openai_model(
                    "upstream-small", mock.url, "--input-price", "3", "--output-price", "9"
                ),
                "broken": openai_model("always-500", mock.url, "--retries", "0"),
            },
        )
        engineer = create_user_key(server, "erin", "engineer")
        consumer = create_user_key(server, "carl", "consumer")
        traces = []
        with sdk(server, consumer) as client:
            for n in range(CALLS):
                messages: Any = [{"role": "user", "content": f"question {n}"}]
                if n % 2:
                    with client.chat.completions.with_streaming_response.create(
                        model="small", messages=messages, stream=True
                    ) as streamed:
                        traces.append(streamed.headers["x-fmops-trace-id"])
                        assert "".join(streamed.iter_lines())
                else:
                    raw = client.chat.completions.with_raw_response.create(model="small", messages=messages)
                    traces.append(raw.headers["x-fmops-trace-id"])
            with pytest.raises(Exception):  # the upstream's 500
                client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
        with server.client(consumer) as api:
            for trace_id, up in zip(traces[:3], (True, True, False), strict=True):
                given = api.post("/api/feedback", json={"trace_id": trace_id, "kind": "thumbs", "value": up})
                assert given.status_code == 201, given.text
        with server.client() as admin:
            project = admin.get("/api/me").json()["project_id"]
        store = Store(f"sqlite:///{home / 'fmops.db'}")
        insert_rows(store, *_history(project))
        store.dispose()
        yield World(server, engineer, consumer)


def _wait_for_volume(client: httpx.Client, expected: int, **params: str) -> dict[str, Any]:
    """The gateway writes spans from a queue: wait until the last calls are in."""
    deadline = time.monotonic() + 10
    while True:
        body = _data(client, **params)
        if body["total"]["volume"] >= expected or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_data_route_counts_the_calls_and_groups_them(world: World) -> None:
    with _signed_in(world.server, world.engineer) as client:
        recent = _wait_for_volume(client, CALLS + 1, range="1h")
        assert recent["total"]["volume"] == CALLS + 1, "the last hour: only the gateway calls"
        assert recent["total"]["errors"] == 1
        assert recent["total"]["thumbs_count"] == 3
        assert recent["total"]["feedback_positive_share"] == pytest.approx(2 / 3)
        assert recent["total"]["ttft_p50_ms"] is not None, "streamed calls have a time to first token"
        assert recent["bucket"] == "minute"
        assert sum(recent["columns"]["volume"]) == CALLS + 1
        assert len(recent["times"]) == len(recent["columns"]["latency_p95_ms"]) in (60, 61)
        assert None in recent["columns"]["latency_p95_ms"], "empty minutes are null points, not zeros"

        day = _data(client, range="24h")
        assert day["total"]["volume"] == CALLS + 1 + HISTORY
        assert day["bucket"] == "hour"
        assert "judge" in day["scores"]
        by_model = _data(client, "groups", range="24h", by="model")
        assert by_model["count"] == 3
        rows = {row["label"]: row for row in by_model["rows"]}
        assert (rows["history-model"]["volume"], rows["small"]["volume"], rows["broken"]["errors"]) == (
            HISTORY,
            CALLS,
            1,
        )
        series = {s["label"]: s for s in by_model["series"]}
        assert sum(series["small"]["volume"]) == CALLS
        assert sum(series["history-model"]["volume"]) == HISTORY

        by_endpoint = _data(client, "groups", range="7d", by="endpoint")
        labels = {row["label"]: row["volume"] for row in by_endpoint["rows"]}
        assert labels == {"support-bot": HISTORY, "(none)": CALLS + 1}

        bad = client.get("/console/dashboards/data", params={"range": "2y"}, headers=JSON)
        assert bad.status_code == 400
        assert "range" in bad.json()["error"]["message"]
        page = client.get("/console/dashboards", params={"by": "nonsense"})
        assert page.status_code == 400
        assert "by" in page.text
        unknown = client.get("/console/dashboards/groups", params={"by": "color"}, headers=JSON)
        assert unknown.status_code == 400
        assert "by" in unknown.json()["error"]["message"]

    with _signed_in(world.server, world.consumer) as client:
        refused = client.get("/console/dashboards/data", headers=JSON)
        assert refused.status_code == 403
        assert client.get("/console/dashboards").status_code == 403
    anonymous = httpx.get(f"{world.server.url}/console/dashboards/data", headers=JSON)
    assert anonymous.status_code == 401


def _canvas_size(page: Page, chart: str) -> tuple[float, float]:
    box = page.locator(f'[data-chart="{chart}"] canvas').first.bounding_box()
    assert box is not None
    return box["width"], box["height"]


def test_dashboard_draws_charts_and_breaks_down(world: World, page: Page, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, world.server, world.engineer)
    began = time.perf_counter()
    page.goto(f"{world.server.url}/console/dashboards")
    expect(page.locator("[data-dashboard]")).to_have_attribute("data-state", "ready")
    drawn_s = time.perf_counter() - began
    assert drawn_s < 5, f"charts took {drawn_s:.1f} s"
    expect(page.locator('[data-total="volume"]')).to_have_text(str(CALLS + 1 + HISTORY))
    for chart in ("volume", "latency", "ttft", "tokens", "cost", "feedback", "scores"):
        width, height = _canvas_size(page, chart)
        assert width > 200, chart
        assert height > 100, chart
        expect(page.locator(f'[data-chart="{chart}"] [data-empty]')).to_be_hidden()
    expect(page.locator('[data-chart="scores"] .u-legend')).to_contain_text("judge")
    expect(page.locator('[data-chart-card="group_volume"]')).to_be_hidden()

    page.select_option("select[name=by]", "model")
    expect(page.locator("[data-breakdown]")).to_be_visible()
    rows = page.locator("[data-breakdown-rows] tr")
    expect(rows).to_have_count(3)
    expect(rows.first.locator("td").first).to_have_text("history-model")
    expect(rows.filter(has_text="small").locator("td").nth(1)).to_have_text(str(CALLS))
    expect(page.locator('[data-chart-card="group_volume"]')).to_be_visible()
    expect(page.locator('[data-chart="group_volume"] .u-legend')).to_contain_text("small")
    assert "by=model" in page.url, "the URL keeps the choice, to share or reload"
    page.locator('[data-chart="volume"]').scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "console-dashboard", tmp_path)

    page.click(".segmented label:has-text('1h')")
    expect(page.locator('[data-total="volume"]')).to_have_text(str(CALLS + 1))
    expect(page.locator("[data-dashboard]")).to_have_attribute("data-state", "ready")
    assert "range=1h" in page.url
    page.reload()
    expect(page.locator("[data-dashboard]")).to_have_attribute("data-state", "ready")
    expect(page.locator("input[name=range][value='1h']")).to_be_checked()
    expect(page.locator("[data-breakdown-rows] tr")).to_have_count(2)
    assert errors == []


def test_an_empty_project_draws_empty_charts(world: World, page: Page) -> None:
    with world.server.client() as admin:
        assert admin.post("/api/projects", json={"name": "quiet"}).status_code == 201
        made = admin.post("/api/keys", json={"name": "quiet-key", "project": "quiet"})
        assert made.status_code == 201, made.text
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, world.server, made.json()["key"])
    page.goto(f"{world.server.url}/console/dashboards?range=30d&by=variant")
    expect(page.locator("[data-dashboard]")).to_have_attribute("data-state", "ready")
    expect(page.locator('[data-total="volume"]')).to_have_text("0")
    expect(page.locator('[data-chart="latency"] [data-empty]')).to_be_visible()
    assert _canvas_size(page, "latency")[0] > 200
    expect(page.locator("[data-breakdown-rows]")).to_contain_text("No requests in this range")
    assert errors == []


def test_group_series_are_the_groups_own(store: Store) -> None:
    """Per-group series filter the time series to each busiest group (a prompt: name and version)."""
    project, now = "p" * 32, utcnow()
    rows = [
        span(project, now - timedelta(hours=h), prompt_name="greet", prompt_version=v, latency_ms=100.0 * v)
        for h in (1, 2, 3)
        for v in (1, 2)
    ]
    rows += [span(project, now - timedelta(hours=1), prompt_name="greet", prompt_version=2, latency_ms=400.0)]
    rows += [span(project, now - timedelta(hours=2)), span("q" * 32, now - timedelta(hours=2))]
    insert_rows(store, rows)
    # Its own thread: Playwright's sync API leaves an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        coroutine = group_data(StatsService(store), project, "24h", Dimension.prompt)
        body = pool.submit(asyncio.run, coroutine).result()
    assert body["count"] == 3
    assert [(r["label"], r["volume"]) for r in body["rows"]] == [
        ("greet v2", 4),
        ("greet v1", 3),
        ("(none)", 1),
    ]
    series = {s["label"]: s for s in body["series"]}
    assert list(series) == ["greet v2", "greet v1"], "the null group has no series of its own"
    assert sum(series["greet v2"]["volume"]) == 4
    assert max(v for v in series["greet v1"]["latency_p95_ms"] if v is not None) == pytest.approx(100.0)
    assert len(series["greet v1"]["volume"]) == len(body["times"])
