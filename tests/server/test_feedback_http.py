"""Feedback over HTTP on a real server: thumbs from the chat's consumer, scores read back by engineers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fmops.gateway.spans import new_trace_id
from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import MockUpstream
from support.server import RunningServer

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("feedback-http")
    with gateway_server(home) as running:
        add_models(home, {"small": openai_model("upstream-small", mock.url)})
        yield running


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, str]:
    """Keys by name: alice and bob are consumers, eve an engineer, mallory an admin of another project."""
    made: dict[str, str] = {}
    with server.client() as admin:
        for user, role in (("alice", "consumer"), ("bob", "consumer"), ("eve", "engineer")):
            assert admin.post("/api/users", json={"name": user, "role": role}).status_code == 201
            resp = admin.post("/api/keys", json={"name": f"{user}-key", "user": user, "role": role})
            assert resp.status_code == 201, resp.text
            made[user] = resp.json()["key"]
        assert admin.post("/api/projects", json={"name": "other"}).status_code == 201
        resp = admin.post("/api/keys", json={"name": "other-key", "project": "other"})
        assert resp.status_code == 201, resp.text
        made["mallory"] = resp.json()["key"]
    return made


def chat(server: RunningServer, key: str | None = None) -> str:
    """One call through the official SDK; returns the trace id the gateway answered with."""
    with sdk(server, key) as client:
        raw = client.chat.completions.with_raw_response.create(model="small", messages=MESSAGES)
    assert raw.parse().choices[0].message.content
    trace_id: str = raw.headers["x-fmops-trace-id"]
    assert len(trace_id) == 32
    return trace_id


def post(server: RunningServer, key: str, **body: Any) -> httpx.Response:
    with server.client(key) as client:
        return client.post("/api/feedback", json=body)


def scores(server: RunningServer, key: str, trace_id: str) -> httpx.Response:
    with server.client(key) as client:
        return client.get(f"/api/traces/{trace_id}/feedback")


def test_thumbs_comment_and_correction_round_trip(server: RunningServer, keys: dict[str, str]) -> None:
    trace_id = chat(server, keys["alice"])

    # Given at once, as the chat UI does: the span may still be in the writer's queue.
    thumbs = post(server, keys["alice"], trace_id=trace_id, kind="thumbs", value=False)
    assert thumbs.status_code == 201, thumbs.text
    assert thumbs.json()["value"] == -1.0
    comment = post(server, keys["alice"], trace_id=trace_id, kind="comment", comment="it is Paris, not Lyon")
    assert comment.status_code == 201, comment.text
    correction = {"role": "assistant", "content": "Paris."}
    fixed = post(
        server, keys["eve"], trace_id=trace_id, kind="correction", corrected_output=correction, source="api"
    )
    assert fixed.status_code == 201, fixed.text

    resp = scores(server, keys["eve"], trace_id)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert [s["id"] for s in got] == [thumbs.json()["id"], comment.json()["id"], fixed.json()["id"]]
    assert [(s["kind"], s["author"], s["source"]) for s in got] == [
        ("thumbs", "alice", "human"),
        ("comment", "alice", "human"),
        ("correction", "eve", "api"),
    ]
    assert got[1]["comment"] == "it is Paris, not Lyon"
    assert got[2]["corrected_output"] == correction
    assert all(s["trace_id"] == trace_id for s in got)


def test_an_evaluator_number_score(server: RunningServer, keys: dict[str, str]) -> None:
    trace_id = chat(server)
    resp = post(
        server,
        keys["eve"],
        trace_id=trace_id,
        kind="number",
        name="judge",
        value=4.5,
        source="evaluator",
        author="rubric-judge",
    )
    assert resp.status_code == 201, resp.text
    assert scores(server, keys["eve"], trace_id).json()[0] | {"id": None, "created_at": None} == {
        "id": None,
        "created_at": None,
        "trace_id": trace_id,
        "span_id": None,
        "name": "judge",
        "kind": "number",
        "value": 4.5,
        "label": None,
        "comment": None,
        "corrected_output": None,
        "source": "evaluator",
        "author": "rubric-judge",
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"kind": "thumbs", "value": 3}, "thumbs.value"),
        ({"kind": "number"}, "number.value"),
        ({"kind": "label"}, "label.label"),
        ({"kind": "correction"}, "correction.corrected_output"),
        ({"kind": "thumbs", "value": "1"}, "thumbs.value"),
        ({"kind": "stars", "value": 1}, "kind"),
    ],
)
def test_bad_scores_are_400_naming_kind_and_field(
    server: RunningServer, keys: dict[str, str], fields: dict[str, Any], param: str
) -> None:
    trace_id = chat(server)
    resp = post(server, keys["eve"], trace_id=trace_id, **fields)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"].startswith(param), error
    if param == "kind":  # an unknown kind: the message lists the known ones
        assert "'thumbs', 'number', 'label', 'comment', 'correction'" in error["message"], error
    assert scores(server, keys["eve"], trace_id).json() == []


def test_unknown_and_other_project_traces_are_404(server: RunningServer, keys: dict[str, str]) -> None:
    ours = chat(server)
    for key, trace_id in ((keys["eve"], new_trace_id()), (keys["mallory"], ours)):
        resp = post(server, key, trace_id=trace_id, kind="thumbs", value=1)
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"]["code"] == "not_found"
        assert scores(server, key, trace_id).status_code == 404
    assert scores(server, keys["eve"], ours).json() == []


def test_consumers_score_only_their_own_calls_and_read_none(
    server: RunningServer, keys: dict[str, str]
) -> None:
    alices = chat(server, keys["alice"])
    admins = chat(server)
    assert post(server, keys["bob"], trace_id=alices, kind="thumbs", value=1).status_code == 404
    assert post(server, keys["alice"], trace_id=admins, kind="thumbs", value=1).status_code == 404
    assert post(server, keys["alice"], trace_id=alices, kind="thumbs", value=1).status_code == 201
    denied = post(server, keys["alice"], trace_id=alices, kind="thumbs", value=1, author="eve")
    assert denied.status_code == 403, denied.text

    resp = scores(server, keys["alice"], alices)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "insufficient_role"
    assert [s["author"] for s in scores(server, keys["eve"], alices).json()] == ["alice"]


def test_feedback_needs_a_key(server: RunningServer) -> None:
    resp = httpx.post(server.url + "/api/feedback", json={"trace_id": new_trace_id(), "kind": "comment"})
    assert resp.status_code == 401
    assert httpx.get(f"{server.url}/api/traces/{new_trace_id()}/feedback").status_code == 401
