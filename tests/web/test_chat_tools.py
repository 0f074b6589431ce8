"""The chat's conversation tools over plain HTTP against a real server and a scripted upstream:
regenerate and edit (versions kept, the branch shown is what the model is sent), switching versions,
remembered parameters, which endpoint and prompt version answered, search and export (the caller's
own only: another's is a 404), and an edit in a conversation another tab deleted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from support.browser import create_user_key
from support.mock_upstream import MockUpstream
from support.server import RunningServer, start_server


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream) -> Iterator[RunningServer]:
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}  # the mock upstream listens on 127.0.0.1
    with start_server(tmp_path_factory.mktemp("chat-tools"), env) as running:
        with running.client() as admin:
            model = {"alias": "plain", "provider": "openai", "model": "up-plain", "base_url": mock.url}
            assert admin.post("/api/models", json=model).status_code == 201
            prompt = {
                "name": "helper",
                "model": "plain",
                "messages": [{"role": "system", "content": "Be brief."}],
                "labels": ["production"],
            }
            assert admin.post("/api/prompts", json=prompt).status_code == 201
            made = admin.post(
                "/api/endpoints", json={"name": "helper-bot", "prompt": "helper", "label": "production"}
            )
            assert made.status_code == 201, made.text
        yield running


class Person:
    """A signed-in browser (cookie and CSRF token) and the same person's API key."""

    def __init__(self, server: RunningServer, name: str) -> None:
        self.key = create_user_key(server, name, "consumer")
        self.client = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
        assert self.client.post("/login", data={"api_key": self.key}).status_code == 303
        found = re.search(r'data-csrf="([^"]+)"', self.client.get("/").text)
        assert found
        self.headers = {"accept": "application/json", "x-csrf-token": found.group(1)}
        self.api = httpx.Client(
            base_url=server.url, timeout=60, headers={"authorization": f"Bearer {self.key}"}
        )

    def start(self, endpoint: str = "plain") -> str:
        made = self.client.post("/chat/conversations", json={"endpoint": endpoint}, headers=self.headers)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers=self.headers)

    def stream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a message, regenerate or edit; the `done` event, after checking the stream's shape."""
        answer = self.post(path, body)
        assert answer.status_code == 200, answer.text
        events = [orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]
        assert [events[0]["type"], events[-1]["type"]] == ["start", "done"], events
        done: dict[str, Any] = events[-1]
        assert done["error"] is None, done
        return done

    def thread(self, conversation: str) -> str:
        shown = self.client.get(f"/chat/conversations/{conversation}/messages")
        assert shown.status_code == 200, shown.text
        return shown.text


@pytest.fixture(scope="module")
def alice(chat_server: RunningServer) -> Person:
    return Person(chat_server, "alice")


@pytest.fixture(scope="module")
def bob(chat_server: RunningServer) -> Person:
    return Person(chat_server, "bob")


def sent(mock: MockUpstream) -> list[str]:
    """The conversation the upstream was last sent (its messages' texts)."""
    return [m["content"] for m in mock.state.requests[-1]["body"]["messages"]]


def reply(mock: MockUpstream, text: str) -> None:
    mock.script({"reply": text})


def test_regenerate_keeps_both_answers_and_the_arrows_switch(alice: Person, mock: MockUpstream) -> None:
    c = alice.start()
    base = f"/chat/conversations/{c}/messages"
    reply(mock, "Five.")
    first = alice.stream(base, {"content": "What is 2+2?"})
    reply(mock, "Four.")
    second = alice.stream(f"{base}/{first['message_id']}/regenerate", {})
    assert sent(mock) == ["What is 2+2?"]  # the old answer is not part of the question again
    thread = alice.thread(c)
    assert "Four." in thread
    assert "Five." not in thread
    assert 'data-testid="version">2/2<' in thread

    back = alice.post(f"{base}/{first['message_id']}/show", {})
    assert back.status_code == 200
    assert "Five." in back.text
    assert 'data-testid="version">1/2<' in back.text
    reply(mock, "Yes.")
    alice.stream(base, {"content": "Sure?"})
    assert sent(mock) == ["What is 2+2?", "Five.", "Sure?"]  # the branch shown is what continues
    forward = alice.post(f"{base}/{second['message_id']}/show", {})
    assert "Four." in forward.text
    assert "Sure?" not in forward.text

    # Regenerating a question, or a message that is not there, is refused with a reason.
    messages = alice.api.get(f"/api/conversations/{c}/messages").json()
    assert [(m["role"], m["version"], m["versions"]) for m in messages] == [
        ("user", 1, 1),
        ("assistant", 2, 2),
    ]
    question = messages[0]["id"]
    refused = alice.post(f"{base}/{question}/regenerate", {})
    assert refused.status_code == 400
    assert "only an answer" in refused.json()["error"]["message"]
    assert alice.post(f"{base}/{'0' * 32}/regenerate", {}).status_code == 404


def test_edit_branches_and_the_old_branch_stays_reachable(alice: Person, mock: MockUpstream) -> None:
    c = alice.start()
    base = f"/chat/conversations/{c}/messages"
    reply(mock, "Red.")
    alice.stream(base, {"content": "Name a colour"})
    reply(mock, "Blue.")
    alice.stream(base, {"content": "Another?"})
    question = alice.api.get(f"/api/conversations/{c}/messages").json()[0]["id"]

    reply(mock, "Apple.")
    done = alice.stream(f"{base}/{question}/edit", {"content": "Name a fruit"})
    assert sent(mock) == ["Name a fruit"]
    thread = alice.thread(c)
    assert "Name a fruit" in thread
    assert "Apple." in thread
    assert "Another?" not in thread
    assert 'data-testid="version">2/2<' in thread
    assert done["message_id"] in thread

    old = alice.post(f"{base}/{question}/show", {})
    assert all(text in old.text for text in ("Name a colour", "Red.", "Another?", "Blue."))

    empty = alice.post(f"{base}/{question}/edit", {"content": "  "})
    assert empty.status_code == 400
    assert "write a message first" in empty.json()["error"]["message"]


def test_an_edit_in_a_conversation_deleted_meanwhile_says_so_and_keeps_the_text(
    alice: Person, mock: MockUpstream
) -> None:
    c = alice.start()
    reply(mock, "Hi.")
    alice.stream(f"/chat/conversations/{c}/messages", {"content": "Hello"})
    question = alice.api.get(f"/api/conversations/{c}/messages").json()[0]["id"]
    assert (
        alice.client.delete(f"/chat/conversations/{c}", headers=alice.headers).status_code == 200
    )  # another tab

    typed = "A long, careful rewrite I would hate to lose"
    gone = alice.post(f"/chat/conversations/{c}/messages/{question}/edit", {"content": typed})
    assert gone.status_code == 404
    body = gone.json()
    assert "no longer exists" in body["error"]["message"]
    assert "deleted" in body["error"]["message"]
    assert body["content"] == typed  # handed back: the page keeps it in the box


def test_parameters_are_remembered_on_the_conversation(alice: Person, mock: MockUpstream) -> None:
    c = alice.start()
    base = f"/chat/conversations/{c}/messages"
    alice.stream(base, {"content": "one", "temperature": 0.4, "max_tokens": 12})
    assert {k: mock.state.requests[-1]["body"].get(k) for k in ("temperature", "max_tokens")} == {
        "temperature": 0.4,
        "max_tokens": 12,
    }
    alice.stream(base, {"content": "two"})  # not named: the remembered ones apply
    assert mock.state.requests[-1]["body"].get("temperature") == 0.4
    page = alice.client.get("/", params={"c": c}).text
    assert 'value="12"' in page
    assert 'value="0.4"' in page
    alice.stream(base, {"content": "three", "max_tokens": None})  # null: back to the model's default
    assert "max_tokens" not in mock.state.requests[-1]["body"]
    assert alice.api.get("/api/conversations").json()[0]["params"] == {"temperature": 0.4}
    bad = alice.post(base, {"content": "four", "temperature": 5})
    assert bad.status_code == 400


def test_the_answer_names_the_endpoint_model_and_prompt_version(alice: Person, mock: MockUpstream) -> None:
    c = alice.start("helper-bot")
    reply(mock, "Brief.")
    alice.stream(f"/chat/conversations/{c}/messages", {"content": "Help"})
    assert sent(mock)[0] == "Be brief."  # the endpoint's prompt
    (answer,) = [
        m for m in alice.api.get(f"/api/conversations/{c}/messages").json() if m["role"] == "assistant"
    ]
    assert (answer["endpoint"], answer["model"], answer["prompt_name"], answer["prompt_version"]) == (
        "helper-bot",
        "plain",
        "helper",
        1,
    )
    assert "helper-bot · model plain · prompt helper v1" in alice.thread(c)


def test_search_and_export_see_only_your_own(alice: Person, bob: Person, mock: MockUpstream) -> None:
    c = alice.start()
    reply(mock, "Bake it for an hour.")
    alice.stream(f"/chat/conversations/{c}/messages", {"content": "How long for a rye loaf?"})
    mine = bob.start()
    reply(mock, "Ok.")
    bob.stream(f"/chat/conversations/{mine}/messages", {"content": "rye whisky"})

    listed = alice.client.get("/chat/search", params={"q": "RYE"}).text
    assert f"conv-{c}" in listed
    assert f"conv-{mine}" not in listed
    assert "rye loaf" in listed  # where it matched
    assert "No conversation holds" in alice.client.get("/chat/search", params={"q": "whisky"}).text
    found = alice.api.get("/api/conversations", params={"q": "an hour"}).json()
    assert [f["id"] for f in found] == [c]
    assert [f["id"] for f in bob.api.get("/api/conversations", params={"q": "rye"}).json()] == [mine]
    assert alice.api.get("/api/conversations", params={"q": " "}).status_code == 400

    md = alice.client.get(f"/chat/conversations/{c}/export", params={"format": "md"})
    assert md.status_code == 200
    assert md.headers["content-type"].startswith("text/markdown")
    assert "attachment" in md.headers["content-disposition"]
    assert ".md" in md.headers["content-disposition"]
    assert "## You" in md.text
    assert "Bake it for an hour." in md.text
    data = alice.api.get(f"/api/conversations/{c}/export", params={"format": "json"}).json()
    assert [m["content"] for m in data["messages"]] == ["How long for a rye loaf?", "Bake it for an hour."]
    assert data["shown"] == [m["id"] for m in data["messages"]]
    assert alice.api.get(f"/api/conversations/{c}/export", params={"format": "pdf"}).status_code in (400, 422)

    answer = data["messages"][1]["id"]
    for attempt in (
        bob.client.get(f"/chat/conversations/{c}/export"),
        bob.api.get(f"/api/conversations/{c}/export"),
        bob.api.get(f"/api/conversations/{c}/messages"),
        bob.client.get(f"/chat/conversations/{c}/messages"),
        bob.post(f"/chat/conversations/{c}/messages/{answer}/regenerate", {}),
        bob.post(f"/chat/conversations/{c}/messages/{answer}/show", {}),
        bob.post(f"/chat/conversations/{c}/messages/{data['messages'][0]['id']}/edit", {"content": "mine"}),
    ):
        assert attempt.status_code == 404, attempt.text
    assert "rye loaf" not in str(bob.api.get("/api/conversations").json())


def test_regenerate_and_edit_over_the_api(alice: Person, bob: Person, mock: MockUpstream) -> None:
    """POST /api/conversations/{id}/messages/{id}/regenerate and .../edit: the same versions as the
    chat's routes, answered in one JSON body; a failing model leaves the edit saved and says why."""
    c = alice.start()
    reply(mock, "Five.")
    first = alice.stream(f"/chat/conversations/{c}/messages", {"content": "What is 2+2?"})
    base = f"/api/conversations/{c}/messages"
    reply(mock, "Four.")
    again = alice.api.post(f"{base}/{first['message_id']}/regenerate", json={"temperature": 0.3})
    assert again.status_code == 200, again.text
    body = again.json()
    assert (body["answer"]["content"], body["answer"]["version"], body["answer"]["versions"]) == (
        "Four.",
        2,
        2,
    )
    assert (body["question"]["content"], body["status"], body["answer"]["error"]) == (
        "What is 2+2?",
        200,
        None,
    )
    assert body["trace_id"] == body["answer"]["trace_id"] is not None
    assert sent(mock) == ["What is 2+2?"]
    assert mock.state.requests[-1]["body"]["temperature"] == 0.3  # and remembered
    assert alice.api.get("/api/conversations").json()[0]["params"] == {"temperature": 0.3}

    question = body["question"]["id"]
    reply(mock, "Six.")
    edited = alice.api.post(f"{base}/{question}/edit", json={"content": "What is 3+3?"}).json()
    assert (edited["question"]["content"], edited["question"]["version"]) == ("What is 3+3?", 2)
    assert edited["answer"]["content"] == "Six."
    assert sent(mock) == ["What is 3+3?"]
    mock.script({"status": 400})  # the model refuses the next call: the edit is kept, the answer says why
    failed = alice.api.post(f"{base}/{question}/edit", json={"content": "What is 4+4?"}).json()
    assert failed["status"] >= 400
    assert failed["answer"]["error"]
    shown = [m["content"] for m in alice.api.get(f"/api/conversations/{c}/messages").json()]
    assert shown[0] == "What is 4+4?"

    for refused, status in (
        (alice.api.post(f"{base}/{question}/edit", json={"content": " "}), 400),
        (alice.api.post(f"{base}/{question}/regenerate", json={}), 400),  # a question, not an answer
        (alice.api.post(f"{base}/{question}/regenerate", json={"temperature": 5}), 400),
        (bob.api.post(f"{base}/{question}/edit", json={"content": "mine"}), 404),
        (bob.api.post(f"{base}/{first['message_id']}/regenerate", json={}), 404),
    ):
        assert refused.status_code == status, refused.text
