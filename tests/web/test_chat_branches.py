"""The chat's conversation tools in a real Chromium against a real server and the real default model
(SmolLM2): regenerate, switch versions with the arrows, copy, edit an earlier message and branch,
remembered options, search, export, and an edit in a conversation another tab deleted."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, sign_in
from support.server import RunningServer, start_server

pytestmark = pytest.mark.slow

ANSWER_MS = 90_000  # the first call loads the model


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("chat-branches")) as running:
        yield running


def ask(page: Page, text: str, *, max_tokens: int = 8) -> None:
    page.click(".composer .options summary")
    page.fill("[data-testid=max-tokens]", str(max_tokens))
    page.fill("[data-testid=temperature]", "0")
    page.click(".composer .options summary")
    page.fill("[data-testid=message-input]", text)
    page.click("[data-testid=send]")


def settled(page: Page, timeout: float = ANSWER_MS) -> None:
    """Until no answer is streaming and the send button is back."""
    page.wait_for_function(
        """() => !document.querySelector('article.msg.streaming')
                 && !document.querySelector('[data-testid=send]').disabled""",
        timeout=timeout,
    )


def test_regenerate_switch_copy_and_edit_to_a_branch(chat_server: RunningServer, page: Page) -> None:
    sign_in(page, chat_server, create_user_key(chat_server, "erin", "consumer"))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=chat_server.url)
    ask(page, "Say hi.")
    expect(page.locator("article.msg.assistant [data-testid=reply]")).to_have_count(1, timeout=ANSWER_MS)
    settled(page)
    conversation = parse_qs(urlparse(page.url).query)["c"][0]
    first_answer = page.locator("article.msg.assistant").get_attribute("data-message-id")
    expect(page.locator("article.msg.assistant [data-testid=answered-by]")).to_contain_text("smollm2")

    # Regenerate: a second version of the answer; the arrows go back and forth.
    page.locator("article.msg.assistant [data-testid=regenerate]").click()
    answer = page.locator("article.msg.assistant")
    expect(answer.locator("[data-testid=version]")).to_have_text("2/2", timeout=ANSWER_MS)
    settled(page)
    assert answer.get_attribute("data-message-id") != first_answer
    answer.locator("[data-testid=previous-version]").click()
    expect(answer.locator("[data-testid=version]")).to_have_text("1/2")
    assert answer.get_attribute("data-message-id") == first_answer
    answer.locator("[data-testid=next-version]").click()
    expect(answer.locator("[data-testid=version]")).to_have_text("2/2")

    # Copy: the answer's text lands on the clipboard.
    answer.locator("[data-testid=copy]").click()
    expect(answer.locator("[data-testid=copy]")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip()
    assert copied.strip()[:10] in answer.locator("[data-testid=reply]").inner_text()

    # Edit the question: a new branch with its own answer; the old one is a version away.
    question = page.locator("article.msg.user")
    question.locator("[data-testid=edit]").click()
    page.fill("[data-testid=edit-input]", "Say bye.")
    page.click("[data-testid=edit-send]")
    expect(page.locator("article.msg.user [data-testid=version]")).to_have_text("2/2", timeout=ANSWER_MS)
    settled(page)
    expect(page.locator("article.msg.user .body")).to_have_text("Say bye.")
    expect(page.locator("article.msg.assistant [data-testid=reply]")).to_have_count(1)
    expect(page.locator("article.msg.assistant [data-testid=versions]")).to_have_count(0)  # its only answer
    page.locator("article.msg.user [data-testid=previous-version]").click()
    expect(page.locator("article.msg.user .body")).to_have_text("Say hi.")
    expect(page.locator("article.msg.assistant [data-testid=version]")).to_have_text("2/2")

    # Kept across a reload: the branch shown and the conversation's options.
    page.reload()
    expect(page.locator("article.msg.user .body")).to_have_text("Say hi.")
    assert page.locator("[data-testid=max-tokens]").input_value() == "8"

    # Search finds it by a message of either branch; the export link downloads it.
    page.fill("[data-testid=search]", "bye")
    expect(page.locator(f"#conv-{conversation} [data-testid=snippet]")).to_contain_text("Say bye.")
    with page.expect_download() as download:
        page.click("[data-testid=export-md]")
    assert download.value.suggested_filename.endswith(".md")


def test_an_edit_after_another_tab_deleted_the_conversation_keeps_the_text(
    chat_server: RunningServer, page: Page
) -> None:
    sign_in(page, chat_server, create_user_key(chat_server, "fred", "consumer"))
    ask(page, "Say hi.", max_tokens=4)
    expect(page.locator("article.msg.assistant [data-testid=reply]")).to_have_count(1, timeout=ANSWER_MS)
    settled(page)
    conversation = parse_qs(urlparse(page.url).query)["c"][0]
    page.locator("article.msg.user [data-testid=edit]").click()
    typed = "A rewrite I would hate to lose"
    page.fill("[data-testid=edit-input]", typed)
    csrf = page.locator("body").get_attribute("data-csrf") or ""
    gone = page.request.delete(
        f"{chat_server.url}/chat/conversations/{conversation}", headers={"x-csrf-token": csrf}
    )
    assert gone.status == 200  # as another tab would
    page.click("[data-testid=edit-send]")
    expect(page.locator("#flash")).to_contain_text("no longer exists")
    expect(page.locator("[data-testid=edit-input]")).to_have_value(typed)
