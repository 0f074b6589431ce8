"""The chat's routes over plain HTTP with a browser's cookie (no browser): CSRF, privacy, bad input,
errors before the first token, and a password session's chat and feedback."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pytest

from fmops.catalog import DEFAULT_CHAT_MODEL
from support.browser import create_user_key
from support.mock_upstream import MockUpstream
from support.reliability import add_models
from support.server import RunningServer, start_server

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Private upstreams allowed: a test registers models on the mock upstream (127.0.0.1).
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
    with start_server(tmp_path_factory.mktemp("chat-http"), env) as running:
        yield running


class Browser:
    """A signed-in browser, as far as the server can tell: the cookie, and the page's CSRF token."""

    def __init__(self, server: RunningServer, **form: str) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
        signed = self.client.post("/login", data=form)
        assert signed.status_code == 303, signed.text
        page = self.client.get("/")
        assert page.status_code == 200, page.text
        found = re.search(r'data-csrf="([^"]+)"', page.text)
        assert found
        self.csrf = found.group(1)

    def headers(self, *, csrf: bool = True, htmx: bool = False) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if csrf:
            headers["x-csrf-token"] = self.csrf
        if htmx:
            headers = {"hx-request": "true", "x-csrf-token": self.csrf}
        return headers

    def start(self, endpoint: str = DEFAULT_CHAT_MODEL) -> str:
        made = self.client.post("/chat/conversations", json={"endpoint": endpoint}, headers=self.headers())
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def send(self, conversation: str, content: str, **options: object) -> httpx.Response:
        return self.client.post(
            f"/chat/conversations/{conversation}/messages",
            json={"content": content, **options},
            headers=self.headers(),
        )

    def events(self, conversation: str, content: str, **options: object) -> list[dict[str, object]]:
        answer = self.send(conversation, content, **options)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream")
        return [orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: ")]


@pytest.fixture(scope="module")
def alice(chat_server: RunningServer) -> Browser:
    return Browser(chat_server, api_key=create_user_key(chat_server, "alice", "consumer"))


@pytest.fixture(scope="module")
def bob(chat_server: RunningServer) -> Browser:
    return Browser(chat_server, api_key=create_user_key(chat_server, "bob", "consumer"))


def test_signed_out_people_are_sent_to_sign_in(chat_server: RunningServer) -> None:
    # The first page of a fresh server imports the web app (seconds on a loaded machine).
    with httpx.Client(base_url=chat_server.url, follow_redirects=False, timeout=30) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2F"
        api = anonymous.post(
            "/chat/conversations", json={"endpoint": "x"}, headers={"accept": "application/json"}
        )
        assert api.status_code == 401
        assert api.json()["error"]["code"] == "sign_in_required"


def test_changes_need_the_csrf_token(alice: Browser) -> None:
    conversation = alice.start()
    refused = [
        alice.client.post("/chat/conversations", json={"endpoint": "m"}, headers=alice.headers(csrf=False)),
        alice.client.patch(f"/chat/conversations/{conversation}", data={"title": "x"}),
        alice.client.delete(f"/chat/conversations/{conversation}"),
        alice.client.post(
            f"/chat/conversations/{conversation}/messages",
            json={"content": "hi"},
            headers=alice.headers(csrf=False),
        ),
        alice.client.post(
            f"/chat/conversations/{conversation}/messages",
            json={"content": "hi"},
            headers={**alice.headers(csrf=False), "x-csrf-token": "forged"},
        ),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert all("csrf" in r.text.lower() or "reload the page" in r.text for r in refused)
    thread = alice.client.get(f"/chat/conversations/{conversation}")
    assert thread.status_code == 200
    assert 'data-testid="message"' not in thread.text  # nothing was sent
    assert alice.client.get("/chat/conversations").text.count('data-testid="conversation"') >= 1


def test_another_users_conversation_is_not_found(
    alice: Browser, bob: Browser, chat_server: RunningServer
) -> None:
    conversation = alice.start(endpoint="no-such-model")
    events = alice.events(conversation, "Alice's secret plan")
    (message_id,) = re.findall(r'data-message-id="([0-9a-f]+)"', str(events[0]["user_html"]))

    tries = [
        bob.client.get(f"/chat/conversations/{conversation}", headers=bob.headers()),
        bob.client.get("/", params={"c": conversation}, headers=bob.headers()),
        bob.client.patch(
            f"/chat/conversations/{conversation}", data={"title": "mine"}, headers=bob.headers()
        ),
        bob.client.delete(f"/chat/conversations/{conversation}", headers=bob.headers()),
        bob.send(conversation, "let me in"),
        bob.client.post(
            f"/chat/messages/{message_id}/feedback", data={"kind": "down"}, headers=bob.headers()
        ),
    ]
    assert [t.status_code for t in tries] == [404] * len(tries)
    assert "secret" not in bob.client.get("/chat/conversations").text
    assert "secret" not in bob.client.get("/").text
    # Not even an admin reads someone's chat.
    admin = Browser(chat_server, api_key=chat_server.admin_key)
    assert admin.client.get(f"/chat/conversations/{conversation}").status_code == 404
    assert 'data-testid="console-link"' in admin.client.get("/").text  # admins chat too, with a way back
    # Alice's conversation is untouched.
    mine = alice.client.get(f"/chat/conversations/{conversation}")
    assert mine.status_code == 200
    assert "Alice&#39;s secret plan" in mine.text
    assert "let me in" not in mine.text


def test_an_unknown_model_answers_in_the_chat_and_keeps_the_message(alice: Browser) -> None:
    conversation = alice.start(endpoint="no-such-model")
    events = alice.events(conversation, "Is anyone there?")
    assert [e["type"] for e in events] == ["start", "done"]
    done = events[-1]
    assert done["status"] == 404
    assert "no-such-model" in str(done["error"])
    assert "does not exist" in str(done["html"])
    thread = alice.client.get(f"/chat/conversations/{conversation}").text
    assert "Is anyone there?" in thread
    assert 'data-testid="reply-error"' in thread


def test_bad_messages_get_a_readable_400(alice: Browser) -> None:
    conversation = alice.start()
    empty = alice.send(conversation, "   ")
    assert empty.status_code == 400
    assert "write a message first" in empty.json()["error"]["message"]
    long = alice.send(conversation, "x" * 20_001)
    assert long.status_code == 400
    assert "at most 20,000 characters" in long.json()["error"]["message"]
    odd = alice.send(conversation, "hi", max_tokens=0)
    assert odd.status_code == 400
    missing = alice.send("0" * 32, "hi")
    assert missing.status_code == 404
    # A rename to nothing, from the page (HTMX): a message in the page's flash area, not a broken page.
    renamed = alice.client.patch(
        f"/chat/conversations/{conversation}", data={"title": "  "}, headers=alice.headers(htmx=True)
    )
    assert renamed.status_code == 400
    assert renamed.headers["hx-retarget"] == "#flash"
    assert "cannot be empty" in renamed.text
    feedback = alice.client.post(
        "/chat/messages/nope/feedback", data={"kind": "sideways"}, headers=alice.headers(htmx=True)
    )
    assert feedback.status_code in (400, 422)


def test_a_password_session_chats_and_rates_its_answer(chat_server: RunningServer) -> None:
    with chat_server.client() as admin:
        user = admin.post("/api/users", json={"name": "paula", "role": "consumer"})
        assert user.status_code == 201, user.text
        done = admin.put(f"/api/users/{user.json()['id']}/password", json={"password": PASSWORD})
        assert done.status_code == 204, done.text
    paula = Browser(chat_server, username="paula", password=PASSWORD)
    usage = paula.client.get("/chat/usage").text
    assert 'data-scope="project"' in usage  # a password session acts as no key: the project's meter
    conversation = paula.start()
    events = paula.events(conversation, "Say hi.", max_tokens=8, temperature=0)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    assert "delta" in kinds
    done = events[-1]
    assert done["error"] is None
    text = "".join(str(e["text"]) for e in events if e["type"] == "delta")
    assert text.strip()
    rated = paula.client.post(
        f"/chat/messages/{done['message_id']}/feedback", data={"kind": "up"}, headers=paula.headers(htmx=True)
    )
    assert rated.status_code == 200, rated.text
    assert 'aria-pressed="true"' in rated.text
    with chat_server.client() as admin:
        (score,) = admin.get(f"/api/traces/{done['trace_id']}/feedback").json()
    assert (score["kind"], score["value"], score["author"]) == ("thumbs", 1.0, "paula")


def test_a_consumer_gets_no_console(alice: Browser) -> None:
    assert alice.client.get("/console").status_code == 403
    assert 'data-testid="console-link"' not in alice.client.get("/").text


def test_upstream_failures_show_in_the_chat_and_keep_what_came(
    chat_server: RunningServer, alice: Browser, mock: MockUpstream
) -> None:
    add_models(
        chat_server,
        mock.url,
        {
            "broken": {"model": "always-500", "max_retries": 0},
            "cut": {"model": "truncate", "max_retries": 0},
        },
    )
    before = alice.events(alice.start("broken"), "Anyone?")
    assert [e["type"] for e in before] == ["start", "done"]
    assert before[-1]["status"] == 502
    assert before[-1]["trace_id"]  # the failed call is traced too

    conversation = alice.start("cut")
    midway = alice.events(conversation, "Tell me everything.")
    words = "".join(str(e["text"]) for e in midway if e["type"] == "delta")
    assert words.strip()  # some words came before the upstream broke off
    done = midway[-1]
    assert (done["type"], done["status"]) == ("done", 502)
    assert "stream" in str(done["error"])
    thread = alice.client.get(f"/chat/conversations/{conversation}").text
    assert "Tell me everything." in thread
    assert words.strip().split()[0] in thread  # the partial answer is kept, with why it stopped
    assert 'data-testid="reply-error"' in thread
