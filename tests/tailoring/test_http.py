"""Tailoring over real HTTP: the API (`/api/me/...`, `/api/shared-prompts`) with keys, and the chat
page's JSON routes with a browser's cookie. Bad input gets a 400 saying what to fix (too long, a
template escape with its line and column), an unknown `/name` and anyone else's prompts,
instructions or conversations a 404; the chat sends the instructions as a marked system message
that the trace shows, unless the conversation switched them off."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pytest

from support.browser import create_user_key
from support.mock_upstream import MockUpstream
from support.reliability import add_models
from support.server import RunningServer, start_server
from support.traces import stored_trace


@pytest.fixture(scope="module")
def tailor_server(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Iterator[RunningServer]:
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}  # the chat test's model is the mock upstream
    with start_server(tmp_path_factory.mktemp("tailoring-http"), env) as running:
        add_models(running, mock.url, {"mocked": {"model": "plain", "max_retries": 0}})
        yield running


@pytest.fixture(scope="module")
def keys(tailor_server: RunningServer) -> dict[str, str]:
    return {
        "alice": create_user_key(tailor_server, "alice", "consumer"),
        "bob": create_user_key(tailor_server, "bob", "consumer"),
        "erin": create_user_key(tailor_server, "erin", "engineer"),
    }


def error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def test_instructions_over_the_api(tailor_server: RunningServer, keys: dict[str, str]) -> None:
    with tailor_server.client(keys["alice"]) as alice, tailor_server.client(keys["bob"]) as bob:
        assert alice.get("/api/me/instructions").json() == {"about": "", "style": "", "updated_at": None}
        saved = alice.put("/api/me/instructions", json={"about": "I teach maths.", "style": "Be brief."})
        assert saved.status_code == 200, saved.text
        assert alice.get("/api/me/instructions").json()["about"] == "I teach maths."
        assert bob.get("/api/me/instructions").json()["about"] == ""  # each has their own

        too_long = error(alice.put("/api/me/instructions", json={"about": "x" * 1501}), 400)
        assert too_long["param"] == "about"
        assert "at most 1,500 characters; this has 1,501" in too_long["message"]
        way_too_long = error(alice.put("/api/me/instructions", json={"style": "x" * 5000}), 400)
        assert "style" in way_too_long["message"]
        assert alice.get("/api/me/instructions").json()["style"] == "Be brief."  # unchanged
        assert error(alice.put("/api/me/instructions", json={"abuot": "typo"}), 400)["message"]

        assert alice.delete("/api/me/instructions").status_code == 204
        assert alice.get("/api/me/instructions").json()["updated_at"] is None


def test_saved_prompts_over_the_api(tailor_server: RunningServer, keys: dict[str, str]) -> None:
    with (
        tailor_server.client(keys["alice"]) as alice,
        tailor_server.client(keys["bob"]) as bob,
        tailor_server.client(keys["erin"]) as erin,
    ):
        made = alice.post(
            "/api/me/prompts",
            json={"name": "recipe", "template": "A recipe for {{ dish }} for {{ people }} people"},
        )
        assert made.status_code == 201, made.text
        prompt = made.json()
        assert (prompt["variables"], prompt["author"], prompt["mine"]) == (["dish", "people"], "alice", True)
        again = alice.post("/api/me/prompts", json={"name": "recipe", "template": "Cook {{ dish }}"})
        assert again.status_code == 200
        assert again.json()["id"] == prompt["id"]

        escape = error(
            alice.post(
                "/api/me/prompts", json={"name": "evil", "template": "hi\n  {{ x.__class__.__mro__ }}"}
            ),
            400,
        )
        assert "line 2, column 7" in escape["message"], escape
        assert escape["param"] == "template"
        long = error(alice.post("/api/me/prompts", json={"name": "long", "template": "x" * 8001}), 400)
        assert "at most 8,000 characters" in long["message"]
        assert error(alice.post("/api/me/prompts", json={"name": "Bad Name", "template": "x"}), 400)["param"]

        filled = alice.post("/api/me/prompts/recipe/fill", json={"variables": {"dish": "soup"}})
        assert filled.json() == {"name": "recipe", "text": "Cook soup"}
        unknown = error(alice.post("/api/me/prompts/nope/fill", json={}), 404)
        assert "no saved prompt named /nope" in unknown["message"]
        assert "/recipe" in unknown["message"]
        missing = error(alice.post("/api/me/prompts/recipe/fill", json={}), 400)
        assert "missing variables: dish" in missing["message"]

        # Not shared: bob and an engineer see nothing of it, by name or by id.
        assert error(bob.get("/api/me/prompts/recipe"), 404)
        assert error(bob.post("/api/me/prompts/recipe/fill", json={"variables": {"dish": "x"}}), 404)
        assert error(bob.get(f"/api/shared-prompts/{prompt['id']}"), 404)
        assert error(bob.put("/api/me/prompts/recipe/shared", json={"shared": True}), 404)
        assert error(bob.delete("/api/me/prompts/recipe"), 404)
        assert error(erin.post(f"/api/shared-prompts/{prompt['id']}/promote", json={}), 404)
        assert bob.get("/api/me/prompts").json() == []
        assert bob.get("/api/shared-prompts").json() == []

        shared = alice.put("/api/me/prompts/recipe/shared", json={"shared": True})
        assert shared.status_code == 200
        assert shared.json()["shared"] is True
        (seen,) = bob.get("/api/shared-prompts").json()
        assert (seen["name"], seen["author"], seen["mine"]) == ("recipe", "alice", False)
        assert bob.get(f"/api/shared-prompts/{prompt['id']}").json()["template"] == "Cook {{ dish }}"
        assert bob.post("/api/me/prompts/recipe/fill", json={"variables": {"dish": "pie"}}).json()[
            "text"
        ] == ("Cook pie")

        # Promotion: an engineer's (a consumer gets a 403), the author kept.
        refused = error(bob.post(f"/api/shared-prompts/{prompt['id']}/promote", json={}), 403)
        assert "engineer" in refused["message"]
        promoted = erin.post(f"/api/shared-prompts/{prompt['id']}/promote", json={"name": "kitchen.recipe"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json() == {
            "prompt": "kitchen.recipe",
            "version": 1,
            "created": True,
            "author": "alice",
        }
        version = erin.get("/api/prompts/kitchen.recipe").json()
        assert version["author"] == "alice"
        assert version["messages"] == [{"role": "user", "content": "Cook {{ dish }}"}]
        assert alice.get("/api/me/prompts/recipe").json()["promoted_to"] == "kitchen.recipe"
        assert error(erin.post("/api/shared-prompts/nosuchid/promote", json={}), 404)

        assert alice.delete("/api/me/prompts/recipe").status_code == 204
        assert error(alice.get("/api/me/prompts/recipe"), 404)


class Browser:
    """A signed-in browser as far as the server can tell: the cookie and the page's CSRF token."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
        assert self.client.post("/login", data={"api_key": key}).status_code == 303
        found = re.search(r'data-csrf="([^"]+)"', self.client.get("/").text)
        assert found
        self.headers = {"accept": "application/json", "x-csrf-token": found.group(1)}

    def call(self, method: str, url: str, body: object = None) -> httpx.Response:
        return self.client.request(method, url, json=body, headers=self.headers)

    def chat(self, conversation: str, content: str) -> dict[str, object]:
        answer = self.call("POST", f"/chat/conversations/{conversation}/messages", {"content": content})
        assert answer.status_code == 200, answer.text
        events = [orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
        return dict(events[-1])


def test_the_chat_sends_the_marked_instructions_unless_switched_off(
    tailor_server: RunningServer, keys: dict[str, str]
) -> None:
    alice, bob = Browser(tailor_server, keys["alice"]), Browser(tailor_server, keys["bob"])
    page = alice.client.get("/").text
    assert 'data-testid="open-instructions"' in page
    assert "chat_tailoring.js" in page
    saved = alice.call(
        "PUT", "/chat/tailoring/instructions", {"about": "I live in Oslo.", "style": "Reply in French."}
    )
    assert saved.status_code == 200, saved.text
    assert alice.call("PUT", "/chat/tailoring/instructions", {"about": "x" * 1501}).status_code == 400
    state = alice.call("GET", "/chat/tailoring").json()
    assert state["instructions"]["about"] == "I live in Oslo."
    assert state["limits"]["instructions"] == 1500

    conversation = alice.call("POST", "/chat/conversations", {"endpoint": "mocked"}).json()["id"]
    done = alice.chat(conversation, "What is the weather like?")
    with tailor_server.client() as admin:
        (span,) = stored_trace(admin, str(done["trace_id"]))["spans"]
    sent = span["input"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith("[Custom instructions: set by alice in the fmops chat settings]")
    assert "I live in Oslo." in sent[0]["content"]
    assert "Reply in French." in sent[0]["content"]

    # Off for this conversation: the next message goes without them.
    assert alice.call("GET", f"/chat/conversations/{conversation}/tailoring").json() == {"instructions": True}
    switched = alice.call("PUT", f"/chat/conversations/{conversation}/tailoring", {"instructions": False})
    assert switched.json() == {"instructions": False}
    done = alice.chat(conversation, "And tomorrow?")
    with tailor_server.client() as admin:
        (span,) = stored_trace(admin, str(done["trace_id"]))["spans"]
    assert "system" not in [m["role"] for m in span["input"]["messages"]]

    # Bob reaches none of it: not her conversation's switch, not her prompts.
    assert bob.call("GET", f"/chat/conversations/{conversation}/tailoring").status_code == 404
    assert (
        bob.call("PUT", f"/chat/conversations/{conversation}/tailoring", {"instructions": True}).status_code
        == 404
    )
    assert bob.call("GET", "/chat/tailoring").json()["instructions"]["about"] == ""
    assert alice.call("GET", f"/chat/conversations/{conversation}/tailoring").json() == {
        "instructions": False
    }


def test_the_chat_pages_prompt_routes(tailor_server: RunningServer, keys: dict[str, str]) -> None:
    alice, bob = Browser(tailor_server, keys["alice"]), Browser(tailor_server, keys["bob"])
    made = alice.call(
        "POST", "/chat/tailoring/prompts", {"name": "poem", "template": "A poem about {{ topic }}"}
    )
    assert made.status_code == 201, made.text
    escape = alice.call("POST", "/chat/tailoring/prompts", {"name": "x", "template": "{{ cycler.__init__ }}"})
    assert escape.status_code == 400
    assert "line 1, column" in escape.json()["error"]["message"]
    filled = alice.call("POST", "/chat/tailoring/prompts/poem/fill", {"variables": {"topic": "rain"}})
    assert filled.json()["text"] == "A poem about rain"
    unknown = alice.call("POST", "/chat/tailoring/prompts/nothing/fill", {"variables": {}})
    assert unknown.status_code == 404
    assert "no saved prompt named /nothing" in unknown.json()["error"]["message"]
    assert (
        bob.call("POST", "/chat/tailoring/prompts/poem/fill", {"variables": {"topic": "x"}}).status_code
        == 404
    )
    assert bob.call("DELETE", "/chat/tailoring/prompts/poem").status_code == 404
    assert [p["name"] for p in bob.call("GET", "/chat/tailoring").json()["prompts"]] == []
    no_csrf = alice.client.post("/chat/tailoring/prompts", json={"name": "y", "template": "y"})
    assert no_csrf.status_code == 403

    # Shared, an engineer promotes it from the chat (a consumer may not), its author kept.
    prompt_id = made.json()["id"]
    assert alice.call("GET", "/chat/tailoring").json()["can_promote"] is False
    assert bob.call("POST", f"/chat/tailoring/shared/{prompt_id}/promote").status_code == 403
    erin = Browser(tailor_server, keys["erin"])
    assert erin.call("GET", "/chat/tailoring").json()["can_promote"] is True
    assert erin.call("POST", f"/chat/tailoring/shared/{prompt_id}/promote").status_code == 404  # not shared
    alice.call(
        "POST",
        "/chat/tailoring/prompts",
        {"name": "poem", "template": "A poem about {{ topic }}", "shared": True},
    )
    promoted = erin.call("POST", f"/chat/tailoring/shared/{prompt_id}/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"prompt": "poem", "version": 1, "created": True, "author": "alice"}
    assert alice.call("DELETE", "/chat/tailoring/prompts/poem").status_code == 204
