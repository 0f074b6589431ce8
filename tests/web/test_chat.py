"""The consumers' chat in a real Chromium against a real server and the real default model (SmolLM2).

A consumer signs in with their key, talks to the default model and watches the answer stream in,
gives feedback that the API then shows on the trace, keeps, renames, continues and deletes
conversations; hostile text stays text; a spent budget reads as a message, not a broken page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

from fmops.catalog import DEFAULT_CHAT_MODEL
from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.server import RunningServer, start_server
from support.traces import stored_trace

pytestmark = pytest.mark.slow

PAYLOAD = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
FIRST_ANSWER_MS = 90_000  # the first call loads the model


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("chat")) as running:
        yield running


def ask(page: Page, text: str, *, max_tokens: int = 32) -> None:
    """Type a message and send it, with a small max_tokens (and temperature 0: the same answer on
    every run) set in the composer's options."""
    page.click(".composer .options summary")
    page.fill("[data-testid=max-tokens]", str(max_tokens))
    page.fill("[data-testid=temperature]", "0")
    page.click(".composer .options summary")
    page.fill("[data-testid=message-input]", text)
    page.click("[data-testid=send]")


def wait_for_answer(page: Page, count: int, timeout: float = FIRST_ANSWER_MS) -> None:
    """Until `count` answers are on the page and the last is the saved one (no longer streaming)."""
    page.wait_for_function(
        """(count) => {
            const answers = document.querySelectorAll('article.msg.assistant');
            return answers.length === count && !answers[count - 1].classList.contains('streaming');
        }""",
        arg=count,
        timeout=timeout,
    )


def conversation_id(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["c"][0]


def record_stream_lengths(page: Page) -> None:
    """Record the streaming answer's text length at each change, to see it grow before it ends."""
    page.evaluate(
        """() => {
            window.__lengths = [];
            new MutationObserver(() => {
                const text = document.querySelector('article.msg.assistant.streaming .body');
                if (text) window.__lengths.push(text.textContent.length);
            }).observe(document.getElementById('messages'),
                       {childList: true, subtree: true, characterData: true});
        }"""
    )


def test_a_consumer_chats_sees_the_answer_stream_and_gives_feedback(
    chat_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    key = create_user_key(chat_server, "carol", "consumer")
    sign_in(page, chat_server, key)
    assert urlparse(page.url).path == "/"
    expect(page.locator("[data-testid=who]")).to_contain_text("carol")
    assert page.locator("[data-testid=console-link]").count() == 0  # a consumer gets no console
    picker = page.locator("[data-testid=endpoint-picker]")
    assert picker.locator("option").first.get_attribute("value") == DEFAULT_CHAT_MODEL
    assert picker.input_value() == DEFAULT_CHAT_MODEL

    record_stream_lengths(page)
    ask(page, "Write a Python function that adds two numbers. Use a code block.", max_tokens=40)
    wait_for_answer(page, 1)

    lengths = page.evaluate("window.__lengths")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 2, f"the answer did not arrive in pieces: {lengths}"
    reply = page.locator("article.msg.assistant").last
    rendered = reply.locator("[data-testid=reply]")
    expect(rendered).to_be_visible()
    assert len(rendered.inner_text().strip()) >= growing[0]
    assert "streaming" not in (reply.get_attribute("class") or "")
    trace_id = reply.get_attribute("data-trace-id")
    assert trace_id
    conversation = conversation_id(page)
    expect(page.locator("[data-testid=conversation-title]").first).to_contain_text("Write a Python function")

    # Thumbs down, a comment and a better answer, each shown on the reply once stored.
    reply.locator("[data-testid=thumbs-down]").click()
    expect(reply.locator("[data-testid=thumbs-down]")).to_have_attribute("aria-pressed", "true")
    reply.locator(".fb-more summary").click()
    reply.locator("[data-testid=comment-input]").fill("It forgot the docstring.")
    reply.locator("[data-testid=send-comment]").click()
    expect(reply.locator("[data-testid=feedback-given]")).to_contain_text("It forgot the docstring.")
    reply.locator(".fb-more summary").click()
    better = "def add(a, b):\n    return a + b"
    reply.locator("[data-testid=correction-input]").fill(better)
    reply.locator("[data-testid=send-correction]").click()
    expect(reply.locator("[data-testid=feedback-given]")).to_contain_text("return a + b")
    expect(reply.locator("[data-testid=thumbs-down]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-testid=usage-requests]").first).to_have_text("1")
    screenshot(page, "chat", tmp_path)

    with chat_server.client() as admin:
        scores = admin.get(f"/api/traces/{trace_id}/feedback")
        assert scores.status_code == 200, scores.text
        got = {s["kind"]: s for s in scores.json()}
        trace = stored_trace(admin, trace_id)
    assert got["thumbs"]["value"] == -1
    assert got["comment"]["comment"] == "It forgot the docstring."
    assert got["correction"]["corrected_output"] == {"role": "assistant", "content": better}
    assert {s["author"] for s in got.values()} == {"carol"}
    assert {s["source"] for s in got.values()} == {"human"}
    (span,) = trace["spans"]
    assert (span["session_id"], span["user"], span["model"]) == (conversation, "carol", DEFAULT_CHAT_MODEL)
    assert span["output"]["content"].strip()


def test_conversations_are_kept_continued_renamed_and_deleted(chat_server: RunningServer, page: Page) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, chat_server, create_user_key(chat_server, "dave", "consumer"))
    ask(page, "My name is Dave. Say hello to me.", max_tokens=16)
    wait_for_answer(page, 1)
    conversation = conversation_id(page)

    # A reload keeps the conversation; the next message continues it with its history.
    page.reload()
    expect(page.locator("article.msg")).to_have_count(2)
    ask(page, "What is my name?", max_tokens=16)
    wait_for_answer(page, 2)
    second_trace = page.locator("article.msg.assistant").last.get_attribute("data-trace-id")
    with chat_server.client() as admin:
        (span,) = stored_trace(admin, str(second_trace))["spans"]
    sent = [m["content"] for m in span["input"]["messages"]]
    assert sent[0] == "My name is Dave. Say hello to me."
    assert sent[-1] == "What is my name?"
    assert len(sent) == 3

    # Rename from the list: the list and the open conversation's heading follow, and it is kept.
    item = page.locator(f"#conv-{conversation}")
    item.locator(".menu summary").click()
    item.locator("input[name=title]").fill("Talking with Dave")
    item.locator("button[type=submit]").click()
    expect(page.locator(f"#conv-{conversation} [data-testid=conversation-title]")).to_have_text(
        "Talking with Dave"
    )
    expect(page.locator("[data-testid=thread-title]")).to_have_text("Talking with Dave")

    # Open it again from the list (a fragment swap, with its address in the history).
    page.click("[data-testid=new-chat]")
    expect(page.locator("article.msg")).to_have_count(0)
    page.click(f"#conv-{conversation} .conversation-link")
    expect(page.locator("article.msg")).to_have_count(4)
    expect(page.locator("[data-testid=thread-title]")).to_have_text("Talking with Dave")
    assert conversation_id(page) == conversation

    # Delete it (after confirming): it leaves the list, and its address no longer answers.
    item.locator(".menu summary").click()
    item.locator("button.danger").click()
    expect(page.locator(f"#conv-{conversation}")).to_have_count(0)
    page.wait_for_url(f"{chat_server.url}/")
    expect(page.locator("[data-testid=conversations]")).to_contain_text("No conversations yet")
    assert page.request.get(f"{chat_server.url}/chat/conversations/{conversation}").status == 404
    assert [d for d in dialogs if d.startswith("confirm")], dialogs
    assert not [d for d in dialogs if d.startswith("alert")], dialogs


def test_hostile_text_in_messages_titles_and_feedback_stays_text(
    chat_server: RunningServer, page: Page
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, chat_server, create_user_key(chat_server, "xavier", "consumer"))
    ask(page, PAYLOAD, max_tokens=8)
    wait_for_answer(page, 1)
    conversation = conversation_id(page)
    item = page.locator(f"#conv-{conversation}")
    item.locator(".menu summary").click()
    item.locator("input[name=title]").fill(PAYLOAD)
    item.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=thread-title]")).to_have_text(PAYLOAD)
    reply = page.locator("article.msg.assistant").last
    if reply.locator("[data-testid=feedback]").count():
        reply.locator(".fb-more summary").click()
        reply.locator("[data-testid=comment-input]").fill(PAYLOAD)
        reply.locator("[data-testid=send-comment]").click()
        expect(reply.locator("[data-testid=feedback-given]")).to_contain_text(PAYLOAD)

    page.reload()
    expect(page.locator("article.msg.user .body").first).to_have_text(PAYLOAD)
    expect(page.locator(f"#conv-{conversation} [data-testid=conversation-title]")).to_have_text(PAYLOAD)
    expect(page.locator("[data-testid=thread-title]")).to_have_text(PAYLOAD)
    injected = page.locator(
        "[onerror], [onload], #messages img, #messages script, #messages svg:not(.icon), "
        "#conversation-list img"
    )
    assert injected.count() == 0
    page.wait_for_timeout(300)  # an onerror would fire by now
    assert not dialogs, dialogs


def test_a_spent_budget_shows_in_the_meter_and_as_a_readable_answer(
    chat_server: RunningServer, page: Page
) -> None:
    key = create_user_key(chat_server, "quinn", "consumer")
    with chat_server.client() as admin:
        (mine,) = [k for k in admin.get("/api/keys", params={"all": True}).json() if k["name"] == "quinn-key"]
        limited = admin.patch(f"/api/keys/{mine['id']}/limits", json={"budget": 0, "rpm_limit": 30})
        assert limited.status_code == 200, limited.text
    sign_in(page, chat_server, key)
    meter = page.locator("[data-testid=meter][data-scope=key]")
    expect(meter.locator("[data-testid=budget-exhausted]")).to_be_visible()
    expect(meter).to_contain_text("30 requests/min")

    ask(page, "Will this be answered?")
    wait_for_answer(page, 1, timeout=15_000)
    error = page.locator("article.msg.assistant").last.locator("[data-testid=reply-error]")
    expect(error).to_contain_text("Budget exhausted")
    # What the person typed is kept, with the reason it was not answered.
    page.reload()
    expect(page.locator("article.msg.user .body")).to_have_text("Will this be answered?")
    expect(page.locator("[data-testid=reply-error]")).to_contain_text("Budget exhausted")
