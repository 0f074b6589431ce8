"""Annotation queues and datasets from traces over HTTP on a real server, on both backends: who may
do what, an annotator working a queue, agreement, the export, and errors that say what to fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.store import utcnow
from fmops.store.models import Span
from support.security import error_of, server_store
from support.server import RunningServer

SCHEMA = [{"name": "topic", "values": ["billing", "shipping"]}]
QUESTIONS = ["Where is my parcel?", "Why was I charged twice?", "Can I pay by invoice?"]


@dataclass
class Site:
    server: RunningServer
    keys: dict[str, str]
    traces: list[str]

    def client(self, who: str) -> httpx.Client:
        return self.server.client(self.keys[who])


def _seed(server: RunningServer, project_id: str) -> list[str]:
    """Chat calls as the gateway stores them (trusted setup; everything after goes over HTTP)."""
    traces = []
    with server_store(server) as store, store.session() as session:
        for i, question in enumerate(QUESTIONS):
            trace_id = new_trace_id()
            traces.append(trace_id)
            session.add(
                Span(
                    span_id=new_span_id(),
                    trace_id=trace_id,
                    project_id=project_id,
                    name="chat small",
                    start_time=utcnow(),
                    model="small",
                    endpoint="support",
                    user=f"customer-{i}",
                    input={"messages": [{"role": "user", "content": question}]},
                    output={"role": "assistant", "content": f"answer {i}"},
                    attributes={},
                )
            )
    return traces


@pytest.fixture(scope="module")
def site(server: RunningServer) -> Site:
    keys: dict[str, str] = {}
    with server.client() as admin:
        project_id = admin.get("/api/me").json()["project_id"]
        for user, role in (
            ("eve", "engineer"),
            ("ann", "annotator"),
            ("abe", "annotator"),
            ("cody", "consumer"),
        ):
            assert admin.post("/api/users", json={"name": user, "role": role}).status_code == 201
            made = admin.post("/api/keys", json={"name": f"{user}-key", "user": user, "role": role})
            assert made.status_code == 201, made.text
            keys[user] = made.json()["key"]
        assert admin.post("/api/projects", json={"name": "elsewhere"}).status_code == 201
        made = admin.post("/api/keys", json={"name": "otto-key", "project": "elsewhere", "role": "annotator"})
        assert made.status_code == 201, made.text
        keys["otto"] = made.json()["key"]
    return Site(server, keys, _seed(server, project_id))


def _decide(site: Site, who: str, queue: str, body: dict[str, Any]) -> dict[str, Any]:
    with site.client(who) as client:
        item = client.get(f"/api/annotation-queues/{queue}/next").json()["item"]
        assert item is not None
        made = client.post(f"/api/annotation-queues/{queue}/items/{item['id']}/decisions", json=body)
        assert made.status_code == 201, made.text
        return dict(made.json())


def test_an_engineer_makes_a_queue_and_two_annotators_work_it(site: Site) -> None:
    body = {"name": "support-review", "filter": {"endpoint": "support"}, "label_schema": SCHEMA, "overlap": 2}
    with site.client("eve") as eve:
        made = eve.post("/api/annotation-queues", json=body)
        assert made.status_code == 201, made.text
        queue = made.json()
        assert queue["progress"] == {
            "total": 3,
            "done": 0,
            "skipped": 0,
            "remaining": 3,
            "mine_done": 0,
            "mine_skipped": 0,
            "mine_remaining": 3,
        }
        assert error_of(eve.post("/api/annotation-queues", json=body), 409)["param"] == "name"
    for who, labels in (
        ("ann", ["billing", "billing", "shipping"]),
        ("abe", ["billing", "shipping", "shipping"]),
    ):
        for label in labels:
            _decide(site, who, "support-review", {"action": "accept", "labels": {"topic": label}})
        with site.client(who) as client:
            assert client.get("/api/annotation-queues/support-review/next").json()["item"] is None
    with site.client("ann") as ann:
        assert [q["name"] for q in ann.get("/api/annotation-queues").json()] == ["support-review"]
        item = ann.get(f"/api/annotation-queues/{queue['id']}/next").json()
        assert item["progress"]["done"] == 3
        # A decision is feedback on the trace: the engineer reads ann's thumbs up and label.
    with site.client("eve") as eve:
        scores = eve.get(f"/api/traces/{site.traces[0]}/feedback").json()
        assert {(s["kind"], s["author"]) for s in scores} >= {("thumbs", "ann"), ("label", "abe")}
        detail = eve.get("/api/annotation-queues/support-review").json()
        topic = {a["field"]: a for a in detail["agreement"]}["topic"]
        assert (topic["pairs"], round(topic["observed"], 3)) == (3, 0.667)
        assert topic["kappa"] == pytest.approx(0.4)  # p_o 2/3, p_e 4/9
        exported = eve.post("/api/annotation-queues/support-review/export", json={"dataset": "support-gold"})
        assert exported.status_code == 201, exported.text
        assert (exported.json()["ref"], exported.json()["rows"]) == ("support-gold@1", 3)
        assert exported.json()["source"]["type"] == "annotation"


def test_roles_and_projects_bound_what_each_person_sees(site: Site) -> None:
    body = {"name": "for-ann-only", "label_schema": SCHEMA, "annotators": ["ann"]}
    with site.client("eve") as eve:
        queue = eve.post("/api/annotation-queues", json=body).json()
    with site.client("ann") as ann:
        assert ann.get(f"/api/annotation-queues/{queue['id']}").status_code == 200
        error = error_of(ann.post("/api/annotation-queues", json={**body, "name": "mine"}), 403)
        assert "engineer" in error["message"]
        assert error_of(ann.post(f"/api/annotation-queues/{queue['id']}/export"), 403)
    with site.client("abe") as abe:  # not named on the queue: it does not exist for him
        assert error_of(abe.get(f"/api/annotation-queues/{queue['id']}"), 404)
        assert "for-ann-only" not in [q["name"] for q in abe.get("/api/annotation-queues").json()]
    with site.client("otto") as otto:  # another project's annotator: 404 by id and by name
        for ref in (queue["id"], "for-ann-only"):
            assert error_of(otto.get(f"/api/annotation-queues/{ref}"), 404)["code"] == "not_found"
            assert error_of(otto.get(f"/api/annotation-queues/{ref}/next"), 404)
        assert otto.get("/api/annotation-queues").json() == []
    with site.client("cody") as cody:
        assert "annotator" in error_of(cody.get("/api/annotation-queues"), 403)["message"]


def test_bad_queue_and_decision_bodies_are_400s_that_say_what_to_fix(site: Site) -> None:
    with site.client("eve") as eve:
        cases = [
            ({"name": "x", "filter": {"colour": "red"}}, "unknown trace filter"),
            ({"name": "x", "filter": {"model": "none-such"}}, "no chat traces"),
            ({"name": "x", "sampling_rate": 0}, "sampling_rate"),
            ({"name": "../x"}, "name"),
            ({"name": "x", "label_schema": [{"name": "t", "values": ["only"]}]}, "values"),
        ]
        for body, words in cases:
            assert words in error_of(eve.post("/api/annotation-queues", json=body), 400)["message"]
        eve.post("/api/annotation-queues", json={"name": "decide-me", "label_schema": SCHEMA})
    with site.client("ann") as ann:
        item = ann.get("/api/annotation-queues/decide-me/next").json()["item"]
        url = f"/api/annotation-queues/decide-me/items/{item['id']}/decisions"
        for body, words in (
            ({"action": "correct"}, "corrected_output"),
            ({"action": "accept", "labels": {"topic": "weather"}}, "not one of"),
            ({"action": "accept", "labels": {"mood": "good"}}, "not in this queue's schema"),
            ({"action": "maybe"}, "action"),
        ):
            assert words in error_of(ann.post(url, json=body), 400)["message"]
        made = ann.post(url, json={"action": "correct", "corrected_output": "Better answer."})
        assert made.status_code == 201, made.text
        assert error_of(ann.post(url, json={"action": "accept"}), 409)
        assert error_of(ann.get("/api/annotation-queues/decide-me/items/" + "0" * 32), 404)


def test_datasets_from_traces_over_http(site: Site) -> None:
    with site.client("eve") as eve:
        fixed = {"trace_id": site.traces[1], "kind": "correction", "corrected_output": "Refunded."}
        assert eve.post("/api/feedback", json=fixed).status_code == 201
        made = eve.post(
            "/api/datasets/from-traces", json={"name": "from-prod", "filter": {"endpoint": "support"}}
        )
        assert made.status_code == 201, made.text
        assert (made.json()["kind"], made.json()["rows"]) == ("chat", 3)
        assert made.json()["source"]["filter"] == {"endpoint": "support"}
        prefs = eve.post(
            "/api/datasets/from-traces",
            json={"name": "prefs", "preference": True, "filter": {"trace_id": site.traces[1]}},
        )
        assert prefs.status_code == 201, prefs.text
        assert (prefs.json()["kind"], prefs.json()["rows"]) == ("preference", 1)
        added = eve.post(
            "/api/datasets/from-traces",
            json={"name": "from-prod", "filter": {"trace_id": site.traces[0]}, "append": True},
        )
        assert (added.json()["version"], added.json()["rows"]) == (2, 4)
        assert added.json()["parent_id"] == made.json()["id"]
        for body, words in (
            ({"name": "x", "filter": {"min_score": "high"}}, "filter.min_score"),
            ({"name": "x", "filter": {"model": "none-such"}}, "no chat traces"),
            (
                {"name": "x", "corrected_only": True, "filter": {"trace_id": site.traces[0]}},
                "no corrected traces",
            ),
            ({"name": "../up", "filter": {}}, "name"),
        ):
            assert words in error_of(eve.post("/api/datasets/from-traces", json=body), 400)["message"]
    with site.client("ann") as ann:
        assert error_of(ann.post("/api/datasets/from-traces", json={"name": "x"}), 403)
