"""An assistant in a real Chromium: an engineer publishes an endpoint (on the mock upstream, the
cheapest model there is) as an assistant; a consumer finds it first in the chat's picker with its
description, clicks a starter and gets the answer through the endpoint; the engineer then sees the
conversation, the answer and the consumer's thumb on the Assistants page of the console."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, sign_in, watch_dialogs
from support.gateway import wait_for
from support.mock_upstream import REPLY, MockUpstream
from support.reliability import add_models
from support.server import RunningServer, start_server


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # Private upstreams allowed: the endpoint's model is on the mock upstream (127.0.0.1).
    with start_server(
        tmp_path_factory.mktemp("chat-assistants"), {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
    ) as running:
        yield running


def test_a_consumer_picks_an_assistant_clicks_a_starter_and_is_answered_by_its_endpoint(
    chat_server: RunningServer, page: Page, mock: MockUpstream
) -> None:
    add_models(chat_server, mock.url, {"mock-model": {"model": "mock-model", "max_retries": 0}})
    engineer = create_user_key(chat_server, "erin", "engineer")
    with chat_server.client(engineer) as erin:
        made = erin.post("/api/endpoints", json={"name": "support-bot", "model": "mock-model"})
        assert made.status_code == 201, made.text
        published = erin.put(
            "/api/assistants/Support helper",
            json={
                "endpoint": "support-bot",
                "description": "Answers questions about your orders.",
                "starters": ["Where is my order?", "How do I return an item?"],
                "roles": ["consumer"],
            },
        )
        assert published.status_code == 200, published.text
        hidden = {"endpoint": "support-bot", "roles": ["engineer"], "description": "Internal"}
        assert erin.put("/api/assistants/Internal helper", json=hidden).status_code == 200

    dialogs = watch_dialogs(page)
    sign_in(page, chat_server, create_user_key(chat_server, "carol", "consumer"))
    picker = page.locator("[data-testid=endpoint-picker]")
    options = picker.locator("option")
    expect(options.first).to_have_text("Support helper (assistant)")  # assistants first
    expect(picker.locator("option[value='assistant:Internal helper']")).to_have_count(0)
    expect(picker).to_have_value("assistant:Support helper")
    expect(page.locator("[data-testid=assistant-about]:visible")).to_contain_text(
        "Answers questions about your orders."
    )
    starters = page.locator("[data-testid=starter]:visible")
    expect(starters).to_have_text(["Where is my order?", "How do I return an item?"])

    starters.nth(1).click()
    page.wait_for_function(
        """() => {
            const answers = document.querySelectorAll('article.msg.assistant');
            return answers.length === 1 && !answers[0].classList.contains('streaming');
        }""",
        timeout=30_000,
    )
    expect(page.locator("article.msg.user").first).to_contain_text("How do I return an item?")
    expect(page.locator("article.msg.assistant").first).to_contain_text(REPLY)
    expect(page.locator("[data-testid=starter]")).to_have_count(0)  # offered on a new conversation only
    asked = [r for r in mock.state.requests if r.get("path", "").endswith("/chat/completions")]
    assert asked
    assert asked[-1]["body"]["messages"][-1]["content"] == "How do I return an item?"

    page.locator("article.msg.assistant").first.locator("[data-testid=thumbs-up]").click()
    expect(page.locator("[data-testid=thumbs-up]").first).to_have_attribute("aria-pressed", "true")

    # Reopened, the conversation still talks to the assistant.
    page.reload()
    expect(page.locator("[data-testid=endpoint-picker]")).to_have_value("assistant:Support helper")
    assert dialogs == []

    # The engineer's view: the endpoint's traffic through the assistant, with the thumb.
    with chat_server.client(engineer) as erin:
        assert wait_for(
            lambda: erin.get("/api/assistants/Support helper/usage").json()["answers"] == 1, timeout=10
        )
        seen = erin.get("/api/assistants/Support helper/usage").json()
        assert (seen["conversations"], seen["users"], seen["thumbs_up"], seen["up_share"]) == (1, 1, 1, 1.0)
        traces = erin.get("/api/traces", params={"endpoint": "support-bot"})
        assert traces.status_code == 200
    sign_in(page, chat_server, engineer)
    page.goto(f"{chat_server.url}/console/endpoints/support-bot")
    page.click("[data-testid=endpoint-assistants]")
    row = page.locator("tr[data-assistant='Support helper']")
    expect(row.locator("[data-testid=conversations]")).to_have_text("1")
    expect(row.locator("[data-testid=answers]")).to_have_text("1")
    expect(row.locator("[data-testid=users]")).to_have_text("1")
