"""An endpoint's `access:` over HTTP on a real server, on both backends: set, shown (API, console),
changed and cleared through the API (a bad one is a 400); a consumer it leaves out gets the unknown
model's 404 on /v1/chat/completions (plain and streamed), does not see it in /v1/models or the
chat's picker, and gets the 404 in the chat, while a named consumer and an engineer are answered;
an assistant published to someone it leaves out is a 400 saying who and how to let them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import httpx
import orjson
import pytest

from support.browser import create_user_key, web_session
from support.databases import postgres_database
from support.mock_upstream import REPLY, MockUpstream
from support.reliability import add_models
from support.server import RunningServer, start_server

ACCESS = {"roles": ["annotator"], "users": ["dan"]}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def access_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream
) -> Iterator[RunningServer]:
    # Private upstreams allowed: the endpoints' model is on the mock upstream (127.0.0.1).
    home = tmp_path_factory.mktemp(f"endpoint-access-{request.param}")
    database = postgres_database() if request.param == "postgresql" else nullcontext(None)
    with database as url:
        env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true", **({"FMOPS_DATABASE_URL": url} if url else {})}
        with start_server(home, env) as running:
            add_models(running, mock.url, {"mock-model": {"model": "mock-model", "max_retries": 0}})
            yield running


@pytest.fixture(scope="module")
def keys(access_server: RunningServer) -> dict[str, str]:
    keys = {
        name: create_user_key(access_server, name, role)
        for name, role in (("carol", "consumer"), ("dan", "consumer"), ("erin", "engineer"))
    }
    with access_server.client(keys["erin"]) as erin:
        made = erin.post(
            "/api/endpoints", json={"name": "restricted", "model": "mock-model", "access": ACCESS}
        )
        assert made.status_code == 201, made.text
        assert erin.post("/api/endpoints", json={"name": "open", "model": "mock-model"}).status_code == 201
    return keys


def _call(server: RunningServer, key: str, model: str, *, stream: bool = False) -> httpx.Response:
    with server.client(key) as client:
        return client.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "stream": stream})


def _streamed_text(answer: httpx.Response) -> str:
    lines = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    chunks = [orjson.loads(line) for line in lines if line != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def test_access_is_set_shown_changed_and_cleared_through_the_api(
    access_server: RunningServer, keys: dict[str, str]
) -> None:
    with access_server.client(keys["erin"]) as erin:
        assert erin.get("/api/endpoints/restricted").json()["access"] == ACCESS
        assert erin.get("/api/endpoints/open").json()["access"] is None
        changed = erin.patch("/api/endpoints/open", json={"access": {"roles": ["engineer"]}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["access"] == {"roles": ["engineer"], "users": []}
        events = erin.get("/api/endpoints/open/events").json()
        assert "access" in events[0]["detail"]["changed"]
        assert erin.patch("/api/endpoints/open", json={"access": None}).json()["access"] is None
        for body, fragment in (
            ({"access": {}}, "say who may call it"),
            ({"access": {"roles": ["guest"]}}, "access.roles.0"),
            ({"access": {"groups": ["x"]}}, "access.groups"),
        ):
            refused = erin.patch("/api/endpoints/open", json=body)
            assert refused.status_code == 400, refused.text
            assert fragment in refused.json()["error"]["message"]
        assert erin.get("/api/endpoints/open").json()["access"] is None
    console, _ = web_session(access_server, keys["erin"])
    try:
        page = console.get("/console/endpoints/restricted")
        assert page.status_code == 200, page.text
        shown = page.text.split('data-testid="endpoint-access">')[1].split("</dd>")[0]
        assert '<span class="badge">annotator</span>' in shown
        assert "dan" in shown
        everyone = console.get("/console/endpoints/open").text
        assert 'data-testid="endpoint-access"><span class="muted">everyone</span>' in everyone
    finally:
        console.close()


def test_a_consumer_left_out_gets_the_unknown_models_404_and_the_others_are_answered(
    access_server: RunningServer, keys: dict[str, str]
) -> None:
    unknown = _call(access_server, keys["carol"], "no-such-endpoint")
    assert unknown.status_code == 404
    for stream in (False, True):
        refused = _call(access_server, keys["carol"], "restricted", stream=stream)
        assert refused.status_code == 404, refused.text
        error = refused.json()["error"]
        assert error["code"] == unknown.json()["error"]["code"] == "model_not_found"
        assert error["message"] == unknown.json()["error"]["message"].replace(
            "no-such-endpoint", "restricted"
        )
        for who in ("dan", "erin"):  # named, and an engineer
            answered = _call(access_server, keys[who], "restricted", stream=stream)
            assert answered.status_code == 200, answered.text
            text = _streamed_text(answered) if stream else answered.json()["choices"][0]["message"]["content"]
            assert text == REPLY
    assert _call(access_server, keys["carol"], "open").status_code == 200
    with access_server.client(keys["carol"]) as carol:
        listed = {m["id"] for m in carol.get("/v1/models").json()["data"]}
        assert "open" in listed
        assert "restricted" not in listed
        assert carol.get("/v1/models/restricted").status_code == 404
    with access_server.client(keys["dan"]) as dan:
        assert "restricted" in {m["id"] for m in dan.get("/v1/models").json()["data"]}


def test_the_chat_offers_it_only_to_those_who_may_call_it(
    access_server: RunningServer, keys: dict[str, str]
) -> None:
    dan, _ = web_session(access_server, keys["dan"])
    try:
        assert 'value="restricted"' in dan.get("/").text
    finally:
        dan.close()
    carol, csrf = web_session(access_server, keys["carol"])
    try:
        page = carol.get("/").text
        assert 'value="open"' in page
        assert 'value="restricted"' not in page
        headers = {"accept": "application/json", "x-csrf-token": csrf}
        made = carol.post("/chat/conversations", json={"endpoint": "restricted"}, headers=headers)
        assert made.status_code == 201, made.text
        answer = carol.post(
            f"/chat/conversations/{made.json()['id']}/messages", json={"content": "hi"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = [
            orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")
        ]
        done = events[-1]
        assert (done["type"], done["status"]) == ("done", 404)
        assert "model 'restricted' does not exist" in str(done["error"])
    finally:
        carol.close()


@pytest.mark.parametrize(
    ("audience", "status", "fragment"),
    [
        (
            {"roles": ["consumer"]},
            400,
            "roles.0: role consumer cannot call endpoint 'restricted' (its access allows role annotator, "
            "user dan, engineers and admins); let it with `fmops endpoints update restricted "
            "--access role:annotator --access user:dan --access role:consumer`",
        ),
        (
            {"users": ["dan", "carol"]},
            400,
            "users.1: 'carol' (consumer) cannot call endpoint 'restricted' (its access allows role "
            "annotator, user dan, engineers and admins); let them with `fmops endpoints update "
            "restricted --access role:annotator --access user:dan --access user:carol`",
        ),
        ({"users": ["dan", "erin"]}, 200, None),
        ({"roles": ["annotator"]}, 200, None),
    ],
)
def test_publishing_an_assistant_to_someone_the_access_leaves_out_is_a_400(
    access_server: RunningServer,
    keys: dict[str, str],
    audience: dict[str, list[str]],
    status: int,
    fragment: str | None,
) -> None:
    with access_server.client(keys["erin"]) as erin:
        published = erin.put("/api/assistants/helper", json={"endpoint": "restricted", **audience})
        assert published.status_code == status, published.text
        if fragment is not None:
            assert fragment in published.json()["error"]["message"]
        else:
            assert erin.delete("/api/assistants/helper").status_code == 200


def test_an_assistant_is_hidden_from_those_its_endpoints_access_no_longer_lets_call_it(
    access_server: RunningServer, keys: dict[str, str]
) -> None:
    """Published to everyone, then its endpoint's `access:` narrowed: a consumer left out no longer
    sees the assistant in /api/assistants or the chat's picker, and choosing it is a 404."""
    with access_server.client(keys["erin"]) as erin:
        made = erin.post("/api/endpoints", json={"name": "narrowed", "model": "mock-model"})
        assert made.status_code == 201, made.text
        published = erin.put("/api/assistants/narrow", json={"endpoint": "narrowed", "roles": ["consumer"]})
        assert published.status_code == 200, published.text
        assert erin.patch("/api/endpoints/narrowed", json={"access": ACCESS}).status_code == 200
    try:
        with access_server.client(keys["carol"]) as carol:
            assert "narrow" not in {a["name"] for a in carol.get("/api/assistants").json()}
            assert carol.get("/api/assistants/narrow").status_code == 404
        with access_server.client(keys["dan"]) as dan:  # named in the access: still offered
            assert "narrow" in {a["name"] for a in dan.get("/api/assistants").json()}
        carol_page, csrf = web_session(access_server, keys["carol"])
        try:
            assert 'value="assistant:narrow"' not in carol_page.get("/").text
            headers = {"accept": "application/json", "x-csrf-token": csrf}
            chosen = carol_page.post(
                "/chat/conversations", json={"endpoint": "assistant:narrow"}, headers=headers
            )
            assert chosen.status_code == 404, chosen.text
        finally:
            carol_page.close()
        dan_page, _ = web_session(access_server, keys["dan"])
        try:
            assert 'value="assistant:narrow"' in dan_page.get("/").text
        finally:
            dan_page.close()
    finally:
        with access_server.client(keys["erin"]) as erin:
            assert erin.delete("/api/assistants/narrow").status_code == 200


def test_a_disabled_endpoints_404_reads_like_an_unknown_models(
    access_server: RunningServer, keys: dict[str, str]
) -> None:
    with access_server.client(keys["erin"]) as erin:
        made = erin.post("/api/endpoints", json={"name": "paused", "model": "mock-model", "enabled": False})
        assert made.status_code == 201, made.text
    for who in ("carol", "erin"):  # an engineer too: the answer is the same for everyone
        for stream in (False, True):
            unknown = _call(access_server, keys[who], "no-such-thing", stream=stream)
            refused = _call(access_server, keys[who], "paused", stream=stream)
            assert (unknown.status_code, refused.status_code) == (404, 404)
            assert refused.json() == orjson.loads(unknown.content.replace(b"no-such-thing", b"paused"))
