"""The stats routes on a real server, on both backends: numbers, project scoping, roles, bad input."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fmops.stats.rollup import roll_up_all
from fmops.store import Store, utcnow
from support.databases import postgres_database, sqlite_url
from support.server import RunningServer, start_server
from support.stats_data import insert_rows, score, span

LATENCIES = [100.0, 200.0, 300.0, 50.0]


@dataclass
class Served:
    server: RunningServer
    api: httpx.Client  # the admin key: an engineer and more
    consumer: str  # a consumer's key
    url: str = ""  # the database (stats roll-ups)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("stats-http")
    env = {"FMOPS_WORKERS": "0"}
    if request.param == "sqlite":
        url = sqlite_url(home)
        with start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            yield from _served(running, url)
    else:
        with postgres_database() as url, start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            yield from _served(running, url)


def _served(server: RunningServer, url: str) -> Iterator[Served]:
    """Three gpt requests two hours ago (one failed), one claude request an hour ago, and a thumbs up."""
    with server.client() as api:
        project = api.get("/api/me").json()["project_id"]
        made = api.post("/api/keys", json={"name": "reader", "role": "consumer"})
        assert made.status_code == 201, made.text
        now = utcnow()
        gpt = [
            span(project, now - timedelta(hours=2), model="gpt", latency_ms=v, cost=0.5, status=s)
            for v, s in zip(LATENCIES[:3], ("ok", "error", "ok"), strict=True)
        ]
        claude = span(project, now - timedelta(hours=1), model="claude", latency_ms=LATENCIES[3], cost=0.25)
        elsewhere = span("o" * 32, now - timedelta(hours=1), model="gpt", latency_ms=9999.0)
        store = Store(url)
        insert_rows(store, [*gpt, claude, elsewhere], [score(claude, "thumbs", 1, source="human")])
        store.dispose()
        yield Served(server, api, made.json()["key"], url)


def get(served: Served, path: str, **params: Any) -> dict[str, Any]:
    response = served.api.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_timeseries_of_the_last_day(served: Served) -> None:
    body = get(served, "/api/stats/timeseries")
    assert (body["bucket"], body["bucket_seconds"]) == ("hour", 3600)
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert end - start == timedelta(hours=24)
    assert end <= datetime.now(UTC)
    points = body["points"]
    assert len(points) in (24, 25)  # 25 when the range does not start on the hour
    times = [datetime.fromisoformat(p["time"]) for p in points]
    assert times == sorted(times)
    assert all(t.minute == 0 and t.second == 0 and t.utcoffset() == timedelta(0) for t in times)
    busy = [p for p in points if p["volume"]]
    assert [p["volume"] for p in busy] == [3, 1]
    assert (busy[0]["errors"], busy[0]["error_rate"]) == (1, pytest.approx(1 / 3))
    assert busy[0]["latency_p50_ms"] == pytest.approx(200.0)
    assert busy[1]["feedback_positive_share"] == 1.0
    total = body["total"]
    assert (total["volume"], total["errors"], total["cost"]) == (4, 1, pytest.approx(1.75))
    cuts = statistics.quantiles(LATENCIES, n=100, method="inclusive")
    assert total["latency_p95_ms"] == pytest.approx(cuts[94]), "the other project's 9999 ms is not here"
    assert (total["thumbs_count"], total["feedback_count"], total["feedback_rate"]) == (1, 1, 0.25)


def test_long_ranges_read_roll_ups_and_say_their_percentiles_are_approximate(served: Served) -> None:
    assert get(served, "/api/stats/timeseries")["percentiles"] == "exact"  # 24 h: every span
    store = Store(served.url)
    # A span two days back, outside every range asked here: the project was tracing before the
    # 40 hours, so their hours without a marked roll-up are quiet ones, not spans from before an
    # upgrade that the roll-ups have yet to see (those are read from spans: the answer stays exact).
    project = get(served, "/api/me")["project_id"]
    insert_rows(store, [span(project, datetime.now(UTC) - timedelta(hours=50), model="old", latency_ms=1.0)])
    roll_up_all(store)  # what `fmops stats --rollup` does; the server's loop keeps them current
    store.dispose()
    now = datetime.now(UTC)
    long = {"start": (now - timedelta(hours=40)).isoformat(), "end": now.isoformat()}
    body = get(served, "/api/stats/timeseries", **long)
    assert body["percentiles"] == "approximate"
    total = body["total"]
    assert (total["volume"], total["errors"], total["cost"]) == (4, 1, pytest.approx(1.75))
    cuts = statistics.quantiles(LATENCIES, n=100, method="inclusive")
    assert total["latency_p95_ms"] == pytest.approx(cuts[94], rel=0.01)
    assert (total["thumbs_count"], total["feedback_count"]) == (1, 1)
    breakdown = get(served, "/api/stats/breakdown", by="model", **long)
    assert breakdown["percentiles"] == "approximate"
    assert [(r["group"], r["volume"]) for r in breakdown["rows"]] == [
        ({"model": "gpt"}, 3),
        ({"model": "claude"}, 1),
    ]
    by_user = get(served, "/api/stats/breakdown", by="user", **long)  # per-user facets since 0023
    assert by_user["percentiles"] == "approximate"
    assert sum(r["volume"] for r in by_user["rows"]) == 4


def test_minute_buckets_on_request(served: Served) -> None:
    now = datetime.now(UTC)
    body = get(
        served,
        "/api/stats/timeseries",
        bucket="minute",
        start=(now - timedelta(hours=3)).isoformat(),
        end=now.isoformat(),
    )
    assert body["bucket"] == "minute"
    assert len(body["points"]) in (180, 181)
    assert sum(p["volume"] for p in body["points"]) == 4


def test_breakdown_by_model(served: Served) -> None:
    body = get(served, "/api/stats/breakdown", by="model")
    assert body["by"] == "model"
    assert body["groups"] == 2
    assert [(r["group"], r["volume"]) for r in body["rows"]] == [
        ({"model": "gpt"}, 3),
        ({"model": "claude"}, 1),
    ]
    assert body["rows"][1]["feedback_positive_share"] == 1.0
    assert body["total"]["volume"] == 4
    first = get(served, "/api/stats/breakdown", by="model", limit=1)
    assert [r["group"] for r in first["rows"]] == [{"model": "gpt"}]
    assert first["groups"] == 2


def test_filters_narrow_both(served: Served) -> None:
    assert get(served, "/api/stats/timeseries", model="claude")["total"]["volume"] == 1
    rows = get(served, "/api/stats/breakdown", by="user", model="gpt")["rows"]
    assert [(r["group"], r["volume"]) for r in rows] == [({"user": None}, 3)]
    assert get(served, "/api/stats/breakdown", by="endpoint", endpoint="nowhere")["rows"] == []


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/stats/breakdown", {}, "by"),
        ("/api/stats/breakdown", {"by": "colour"}, "by"),
        ("/api/stats/breakdown", {"by": "model", "limit": 0}, "limit"),
        ("/api/stats/breakdown", {"by": "model", "limit": 501}, "limit"),
        ("/api/stats/timeseries", {"bucket": "week"}, "bucket"),
        ("/api/stats/timeseries", {"start": "yesterday"}, "start"),
        ("/api/stats/timeseries", {"prompt_version": "two"}, "prompt_version"),
        ("/api/stats/timeseries", {"prompt_version": 0}, "prompt_version"),
        ("/api/stats/timeseries", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ("/api/stats/timeseries", {"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        (
            "/api/stats/timeseries",
            {"bucket": "minute", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
            "bucket",
        ),
        ("/api/stats/breakdown", {"by": "model", "model": ""}, "model"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    served: Served, path: str, params: dict[str, Any], param: str
) -> None:
    response = served.api.get(path, params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["message"]


def test_engineers_only(served: Served) -> None:
    for path in ("/api/stats/timeseries", "/api/stats/breakdown?by=model"):
        with served.server.client(served.consumer) as consumer:
            assert consumer.get(path).status_code == 403
        assert httpx.get(served.server.url + path).status_code == 401
