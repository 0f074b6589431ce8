"""Tailoring the chat in a real Chromium against a real server and the real default model (SmolLM2):
a consumer sets custom instructions, saves a prompt with a variable, calls it as `/name` (picked from
the suggestions, filled through its form), and the trace holds the marked system message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.server import RunningServer, start_server
from support.traces import stored_trace

pytestmark = pytest.mark.slow

FIRST_ANSWER_MS = 90_000  # the first call loads the model


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("chat-tailoring")) as running:
        yield running


def test_instructions_a_saved_prompt_and_slash_name_reach_the_trace(
    chat_server: RunningServer, page: Page, tmp_path: Path
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, chat_server, create_user_key(chat_server, "tess", "consumer"))

    # Custom instructions: too long is refused in the dialog, saying so; then saved.
    page.click("[data-testid=open-instructions]")
    expect(page.locator("[data-testid=instructions-dialog]")).to_be_visible()
    page.fill("[data-testid=instructions-about]", "x" * 1501)
    page.click("[data-testid=save-instructions]")
    expect(page.locator("[data-testid=instructions-error]")).to_contain_text("at most 1,500 characters")
    page.fill("[data-testid=instructions-about]", "My name is Tess and I grow tomatoes.")
    page.fill("[data-testid=instructions-style]", "Answer in one short sentence.")
    page.click("[data-testid=save-instructions]")
    expect(page.locator("[data-testid=instructions-dialog]")).to_be_hidden()
    expect(page.locator("[data-testid=tailoring-saved]")).to_contain_text("Custom instructions saved")
    expect(page.locator("[data-testid=instructions-switch]")).to_be_checked()

    # A saved prompt with a variable; an escape is refused with its line and column.
    page.click("[data-testid=open-prompts]")
    page.fill("[data-testid=prompt-name]", "garden")
    page.fill("[data-testid=prompt-template]", "One tip for {{ plant.__class__ }}")
    page.click("[data-testid=save-prompt]")
    expect(page.locator("[data-testid=prompt-error]")).to_contain_text("line 1, column")
    page.fill("[data-testid=prompt-template]", "Give me one tip about growing {{ plant }}.")
    page.click("[data-testid=save-prompt]")
    expect(page.locator("[data-testid=saved-prompt]")).to_contain_text("/garden")
    page.locator("[data-testid=prompts-dialog] [data-tailoring-close]").click()

    # `/` lists the saved prompts; an unknown one says so and keeps the text.
    box = page.locator("[data-testid=message-input]")
    box.fill("/nope")
    page.click("[data-testid=send]")
    expect(page.locator("[data-testid=tailoring-flash]")).to_contain_text("no saved prompt named /nope")
    expect(box).to_have_value("/nope")
    box.fill("")
    box.press_sequentially("/gar")
    expect(page.locator("[data-testid=slash-menu]")).to_contain_text("/garden")
    box.press("Enter")
    expect(page.locator("[data-testid=fill-dialog]")).to_be_visible()
    page.fill("[data-testid=fill-plant]", "tomatoes")
    page.click("[data-testid=fill-submit]")
    expect(box).to_have_value("Give me one tip about growing tomatoes.")
    screenshot(page, "chat-tailoring", tmp_path)

    page.click(".composer .options summary")
    page.fill("[data-testid=max-tokens]", "16")
    page.fill("[data-testid=temperature]", "0")
    page.click(".composer .options summary")
    page.click("[data-testid=send]")
    page.wait_for_function(
        """() => {
            const answers = document.querySelectorAll('article.msg.assistant');
            return answers.length === 1 && !answers[0].classList.contains('streaming');
        }""",
        timeout=FIRST_ANSWER_MS,
    )
    trace_id = page.locator("article.msg.assistant").last.get_attribute("data-trace-id")
    assert trace_id
    with chat_server.client() as admin:
        (span,) = stored_trace(admin, trace_id)["spans"]
    system, asked = span["input"]["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("[Custom instructions: set by tess in the fmops chat settings]")
    assert "I grow tomatoes." in system["content"]
    assert "one short sentence" in system["content"]
    assert (asked["role"], asked["content"]) == ("user", "Give me one tip about growing tomatoes.")
    assert not [d for d in dialogs if d.startswith("alert")], dialogs
