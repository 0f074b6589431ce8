"""Alerts on a real server, on both backends: its loop fires a rule once to a webhook, then resolves it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fmops.store import Store, utcnow
from support.databases import postgres_database, sqlite_url
from support.server import RunningServer, start_server
from support.stats_data import insert_rows, span
from support.webhook_receiver import Receiver, webhook_receiver

INTERVAL = 0.3  # seconds between the server's evaluation rounds


@dataclass
class Served:
    server: RunningServer
    api: httpx.Client  # admin key
    store: Store  # the server's database, to add spans as if they had been traced
    project_id: str

    def requests(self, *latencies: float, **columns: Any) -> None:
        insert_rows(self.store, [span(self.project_id, utcnow(), latency_ms=v, **columns) for v in latencies])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("alerts-http")
    env = {
        "FMOPS_WORKERS": "0",
        "FMOPS_ALERT_INTERVAL_SECONDS": str(INTERVAL),
        "FMOPS_UPSTREAM_ALLOW_PRIVATE": "true",  # the webhook receiver listens on 127.0.0.1
    }
    if request.param == "sqlite":
        url = sqlite_url(home)
        with start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            yield from _served(running, url)
    else:
        with postgres_database() as url, start_server(home, env | {"FMOPS_DATABASE_URL": url}) as running:
            yield from _served(running, url)


def _served(server: RunningServer, url: str) -> Iterator[Served]:
    store = Store(url)
    with server.client() as api:
        yield Served(server, api, store, api.get("/api/me").json()["project_id"])
    store.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def create(served: Served, **fields: Any) -> dict[str, Any]:
    body = {"name": "slow", "metric": "latency_p95_ms", "operator": ">", "threshold": 500} | fields
    response = served.api.post("/api/alerts", json=body)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def events(served: Served, rule_id: str) -> list[dict[str, Any]]:
    response = served.api.get("/api/alerts/events", params={"rule_id": rule_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_the_loop_fires_once_then_resolves(served: Served, receiver: Receiver) -> None:
    rule = create(served, name="p95", filters={"model": "loop"}, webhook_url=receiver.url)
    served.requests(900.0, 1100.0, model="loop")
    [fired] = receiver.wait_for(1)
    assert (fired["state"], fired["rule"]["id"]) == ("firing", rule["id"])
    time.sleep(INTERVAL * 5)  # several more rounds, still over the threshold
    assert len(receiver.received) == 1, "no repeat while firing"
    assert served.api.get(f"/api/alerts/{rule['id']}").json()["state"] == "firing"

    served.requests(*[100.0] * 98, model="loop")
    resolved = receiver.wait_for(2)[1]
    assert resolved["state"] == "resolved"
    time.sleep(INTERVAL * 3)
    assert len(receiver.received) == 2
    recorded = events(served, rule["id"])
    assert [(e["state"], e["delivered"]) for e in recorded] == [("resolved", True), ("firing", True)]
    assert [e["id"] for e in recorded] == [resolved["event_id"], fired["event_id"]]


def test_evaluate_now(served: Served, receiver: Receiver) -> None:
    rule = create(
        served, name="now", metric="error_rate", threshold=0.5, filters={"model": "now"}, min_count=2
    )
    idle = served.api.post(f"/api/alerts/{rule['id']}/evaluate")
    assert idle.status_code == 200, idle.text
    assert (idle.json()["value"], idle.json()["breached"], idle.json()["event"]) == (None, None, None)
    served.requests(10.0, 10.0, 10.0, model="now", status="error")
    outcome = served.api.post(f"/api/alerts/{rule['id']}/evaluate").json()
    assert (outcome["value"], outcome["count"], outcome["breached"]) == (1.0, 3, True)
    # Whichever evaluated first (this call or the loop) fired it; there is exactly one event.
    assert outcome["rule"]["state"] == "firing"
    assert [e["state"] for e in events(served, rule["id"])] == ["firing"]
    assert receiver.received == [], "this rule has no webhook"


def test_create_read_change_delete(served: Served) -> None:
    rule = create(served, name="crud", window_seconds=600, filters={"endpoint": "support"})
    assert (rule["state"], rule["enabled"], rule["filters"]) == ("ok", True, {"endpoint": "support"})
    assert rule["id"] in [r["id"] for r in served.api.get("/api/alerts").json()]
    changed = served.api.patch(f"/api/alerts/{rule['id']}", json={"threshold": 750, "enabled": False})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["threshold"], changed.json()["enabled"]) == (750, False)
    assert (
        served.api.post(
            "/api/alerts", json={"name": "crud", "metric": "volume", "operator": "<", "threshold": 1}
        ).status_code
        == 409
    )
    assert served.api.delete(f"/api/alerts/{rule['id']}").status_code == 204
    assert served.api.get(f"/api/alerts/{rule['id']}").status_code == 404
    assert served.api.delete(f"/api/alerts/{rule['id']}").status_code == 404


BAD_RULES = [
    ({"metric": "p95"}, "metric"),
    ({"operator": "=="}, "operator"),
    ({"threshold": "500"}, "threshold"),
    ({"window_seconds": 5}, "window_seconds"),
    ({"min_count": -1}, "min_count"),
    ({"filters": {"modle": "x"}}, "filters.modle"),
    ({"colour": "red"}, "colour"),
    ({"metric": "score_mean"}, "filters"),
    ({"metric": "error_rate", "threshold": 5}, "threshold"),
    ({"webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_RULES, ids=lambda v: str(v)[:40])
def test_bad_rules_are_a_400_naming_the_field(served: Served, fields: dict[str, Any], param: str) -> None:
    body = {"name": "bad", "metric": "latency_p95_ms", "operator": ">", "threshold": 500} | fields
    response = served.api.post("/api/alerts", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_bad_paths_and_queries(served: Served) -> None:
    rule = create(served, name="paths")
    nulled = served.api.patch(f"/api/alerts/{rule['id']}", json={"threshold": None})
    assert (nulled.status_code, nulled.json()["error"]["param"]) == (400, "threshold")
    assert served.api.get("/api/alerts/not-an-id").status_code == 400
    assert served.api.get("/api/alerts/" + "0" * 32).status_code == 404
    assert served.api.post("/api/alerts/" + "0" * 32 + "/evaluate").status_code == 404
    assert served.api.get("/api/alerts/events", params={"limit": 0}).status_code == 400
    missing = served.api.get("/api/alerts/events", params={"before": "0" * 32})
    assert (missing.status_code, missing.json()["error"]["param"]) == (404, "before")


def test_roles_and_projects(served: Served) -> None:
    rule = create(served, name="mine")
    consumer = served.api.post("/api/keys", json={"name": "alerts-consumer", "role": "consumer"}).json()[
        "key"
    ]
    with served.server.client(consumer) as client:
        assert client.get("/api/alerts").status_code == 403
    assert served.api.post("/api/projects", json={"name": "elsewhere"}).status_code == 201
    other = served.api.post("/api/keys", json={"name": "elsewhere-key", "project": "elsewhere"}).json()["key"]
    with served.server.client(other) as client:
        assert client.get(f"/api/alerts/{rule['id']}").status_code == 404
        assert client.get("/api/alerts").json() == []
        assert client.get("/api/alerts/events", params={"rule_id": rule["id"]}).json() == []
