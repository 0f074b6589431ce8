"""Assistants over HTTP on a real server, on both backends: engineers publish (a role or user who
cannot call the endpoint is a 400 saying why), everyone lists what they may use, an assistant a
consumer may not use is a 404 to read or to choose in the chat, and the console's page renders."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.browser import create_user_key, web_session
from support.server import RunningServer

MODEL = "smollm2-135m-instruct"  # built in: every home has it (never called here)
HELPER = {
    "endpoint": "support-bot",
    "description": "Answers questions about orders.",
    "starters": ["Where is my order?", "How do I return an item?"],
    "roles": ["consumer"],
}


@pytest.fixture(scope="module")
def keys(server: RunningServer) -> dict[str, str]:
    with server.client() as admin:
        for name, enabled in (("support-bot", True), ("retired", False)):
            made = admin.post("/api/endpoints", json={"name": name, "model": MODEL, "enabled": enabled})
            assert made.status_code == 201, made.text
    return {
        "carol": create_user_key(server, "carol", "consumer"),
        "dan": create_user_key(server, "dan", "consumer"),
        "erin": create_user_key(server, "erin", "engineer"),
    }


@pytest.fixture
def erin(server: RunningServer, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client(keys["erin"]) as client:
        yield client


def test_an_engineer_publishes_replaces_and_unpublishes(erin: httpx.Client) -> None:
    made = erin.put("/api/assistants/Support helper", json=HELPER)
    assert made.status_code == 200, made.text
    assert made.json()["change"] == "created"
    shown = made.json()["assistant"]
    assert (shown["name"], shown["endpoint"], shown["roles"], shown["created_by"]) == (
        "Support helper",
        "support-bot",
        ["consumer"],
        "erin",
    )
    assert erin.put("/api/assistants/Support helper", json=HELPER).json()["change"] == "unchanged"
    changed = erin.put("/api/assistants/Support helper", json={**HELPER, "starters": ["Hi"]})
    assert (changed.json()["change"], changed.json()["assistant"]["starters"]) == ("updated", ["Hi"])
    assert erin.delete("/api/assistants/Support helper").status_code == 200
    assert erin.get("/api/assistants/Support helper").status_code == 404
    gone = erin.delete("/api/assistants/Support helper")
    assert gone.status_code == 404
    assert "no assistant named 'Support helper'" in gone.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**HELPER, "endpoint": "retired", "roles": ["consumer"]},
            "endpoint 'retired' is disabled, so no one can call it (role consumer included)",
        ),
        ({**HELPER, "users": ["nobody"]}, "users.0: 'nobody' is not a member of this project"),
        ({**HELPER, "roles": ["guest"]}, "roles.0"),
        ({**HELPER, "roles": [], "users": []}, "say who may use it"),
        ({**HELPER, "starters": ["x"] * 7}, "starters"),
    ],
)
def test_publishing_what_cannot_work_is_a_400_saying_why(
    erin: httpx.Client, body: dict[str, object], message: str
) -> None:
    refused = erin.put("/api/assistants/broken", json=body)
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]["message"]
    assert erin.get("/api/assistants/broken").status_code == 404


def test_publishing_a_missing_endpoint_is_a_404_naming_it(erin: httpx.Client) -> None:
    refused = erin.put("/api/assistants/broken", json={**HELPER, "endpoint": "nowhere"})
    assert refused.status_code == 404, refused.text
    assert "endpoint 'nowhere' does not exist in this project" in refused.json()["error"]["message"]
    assert erin.get("/api/assistants/broken").status_code == 404


def test_consumers_see_only_what_they_may_use_and_get_404_for_the_rest(
    server: RunningServer, keys: dict[str, str], erin: httpx.Client
) -> None:
    assert erin.put("/api/assistants/everyone", json=HELPER).status_code == 200
    for_dan = {**HELPER, "roles": [], "users": ["dan"]}
    assert erin.put("/api/assistants/for-dan", json=for_dan).status_code == 200
    try:
        with server.client(keys["carol"]) as carol:
            listed = carol.get("/api/assistants").json()
            assert [a["name"] for a in listed] == ["everyone"]
            assert "users" not in {k for k, v in listed[0].items() if v is not None}  # the audience is hidden
            assert carol.get("/api/assistants/for-dan").status_code == 404
            assert carol.put("/api/assistants/x", json=HELPER).status_code == 403
            assert carol.get("/api/assistants/everyone/usage").status_code == 403
        with server.client(keys["dan"]) as dan:
            assert [a["name"] for a in dan.get("/api/assistants").json()] == ["everyone", "for-dan"]

        # The chat: the picker offers the assistant first, the hidden one not at all; choosing it is a 404.
        client, csrf = web_session(server, keys["carol"])
        try:
            page = client.get("/").text
            assert 'value="assistant:everyone" selected' in page
            assert "assistant:for-dan" not in page
            # An endpoint published as an assistant is offered as the assistant only.
            assert 'value="support-bot"' not in page
            assert "How do I return an item?" in page  # its starters, on a new conversation
            headers = {"accept": "application/json", "x-csrf-token": csrf}
            hidden = client.post(
                "/chat/conversations", json={"endpoint": "assistant:for-dan"}, headers=headers
            )
            assert hidden.status_code == 404
            assert "no assistant named 'for-dan' is available to you" in hidden.json()["error"]["message"]
            made = client.post(
                "/chat/conversations", json={"endpoint": "assistant:everyone"}, headers=headers
            )
            assert made.status_code == 201, made.text
            reopened = client.get(f"/?c={made.json()['id']}").text
            assert 'value="assistant:everyone" selected' in reopened
            switched = client.post(
                f"/chat/conversations/{made.json()['id']}/messages",
                json={"content": "hi", "endpoint": "assistant:for-dan"},
                headers=headers,
            )
            assert switched.status_code == 404
        finally:
            client.close()

        usage = erin.get("/api/assistants/everyone/usage", params={"window": "24h"})
        assert usage.status_code == 200, usage.text
        assert usage.json()["answers"] == 0  # a conversation with no answer yet
        assert erin.get("/api/assistants/everyone/usage", params={"window": "2y"}).status_code == 400

        # The console: the Build page with the figures, and the endpoint's page linking to it.
        console, _ = web_session(server, keys["erin"])
        try:
            listing = console.get("/console/assistants", params={"endpoint": "support-bot"})
            assert listing.status_code == 200
            assert 'data-assistant="everyone"' in listing.text
            assert 'data-assistant="for-dan"' in listing.text
            assert 'id="publish-assistant"' in listing.text
            detail = console.get("/console/endpoints/support-bot").text
            assert "/console/assistants?endpoint=support-bot" in detail
        finally:
            console.close()
    finally:
        erin.delete("/api/assistants/everyone")
        erin.delete("/api/assistants/for-dan")
