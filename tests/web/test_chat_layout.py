"""The chat page as a person meets it, in a real Chromium against a real server and a mock model:
on a phone (390x844) the conversation list opens as a drawer; a new conversation is listed as soon as
the server makes it; the keyboard alone sends, breaks lines and stops an answer with focus always
visible; the page and the sign-in page follow the system's dark mode (the console too); and axe-core
finds nothing of "serious" or "critical" impact on either, in light or dark (on the console, in dark).

Screenshots (kept in docs/screenshots by `make screenshots`): chat-phone, chat-phone-conversations,
chat-dark.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect

from support.browser import create_user_key, screenshot, sign_in, web_session
from support.gateway import gateway_server
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
BAD_IMPACTS = ("serious", "critical")


@dataclass
class Site:
    server: RunningServer
    key: str  # a consumer's, with a few conversations already
    seeded: list[str]  # their conversations' ids, oldest first
    failed: str  # one whose answer failed (the upstream answered 500)


def _start(client: Any, token: str, endpoint: str, text: str) -> str:
    headers = {"x-csrf-token": token, "accept": "application/json"}
    made = client.post("/chat/conversations", json={"endpoint": endpoint}, headers=headers)
    assert made.status_code == 201, made.text
    conversation = str(made.json()["id"])
    sent = client.post(
        f"/chat/conversations/{conversation}/messages", json={"content": text}, headers=headers
    )
    assert sent.status_code == 200, sent.text
    assert '"type":"done"' in sent.text, sent.text
    return conversation


@pytest.fixture(scope="module")
def site(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
    with gateway_server(tmp_path_factory.mktemp("chat-layout"), env) as server:
        with server.client() as admin:
            models = (("talker", "ok-talker"), ("dripper", "drip-150"), ("broken", "always-500"))
            for alias, upstream in models:
                model = {"alias": alias, "provider": "openai", "model": upstream, "base_url": mock.url}
                assert admin.post("/api/models", json=model).status_code == 201
        key = create_user_key(server, "pia", "consumer")
        client, token = web_session(server, key)
        try:
            seeded = [
                _start(client, token, "talker", text)
                for text in ("Plan a trip to Lisbon", "Explain **Markdown** lists", "Recipe for pancakes")
            ]
            failed = _start(client, token, "broken", "This one fails")
        finally:
            client.close()
        yield Site(server=server, key=key, seeded=seeded, failed=failed)


@pytest.fixture
def context_for(browser: Browser) -> Iterator[Any]:
    """New browser contexts with a given viewport and colour scheme, closed after the test."""
    made: list[BrowserContext] = []

    def new(viewport: dict[str, int] = DESKTOP, color_scheme: str = "light") -> Page:
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        made.append(context)
        return context.new_page()

    yield new
    for context in made:
        context.close()


def pick_model(page: Page, alias: str) -> None:
    page.select_option("[data-testid=endpoint-picker]", alias)


def conversation_id(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["c"][0]


def focused(page: Page) -> dict[str, str]:
    """What has the focus: its test id (or tag), and its outline as drawn."""
    return dict(
        page.evaluate(
            """() => {
                const el = document.activeElement;
                const style = getComputedStyle(el);
                return {id: el.getAttribute('data-testid') || el.tagName.toLowerCase(),
                        outline: style.outlineStyle, width: style.outlineWidth,
                        drawer: String(!!el.closest('.chat-side'))};
            }"""
        )
    )


def luminance(page: Page, selector: str, prop: str = "backgroundColor") -> float:
    """Relative luminance (0 black .. 1 white) of an element's computed colour; a transparent
    background is its nearest painted ancestor's (the page's, in the end)."""
    return float(
        page.evaluate(
            """([selector, prop]) => {
                let el = document.querySelector(selector);
                let rgb = getComputedStyle(el)[prop].match(/[\\d.]+/g);
                const clear = () => rgb.length === 4 && Number(rgb[3]) === 0;
                while (prop === 'backgroundColor' && clear() && el.parentElement) {
                    el = el.parentElement;
                    rgb = getComputedStyle(el)[prop].match(/[\\d.]+/g);
                }
                const [r, g, b] = rgb.slice(0, 3).map(Number).map(v => {
                    v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b;
            }""",
            [selector, prop],
        )
    )


def serious_violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
        if v["impact"] in BAD_IMPACTS
    ]


# --- the two defects a new user found ------------------------------------------------------------


def test_on_a_phone_the_conversation_list_opens_as_a_drawer(
    site: Site, context_for: Any, tmp_path: Path
) -> None:
    page = context_for(PHONE)
    sign_in(page, site.server, site.key)
    page.goto(f"{site.server.url}/?c={site.seeded[2]}")
    side = page.locator(".chat-side")
    menu = page.locator("[data-testid=menu]")
    expect(side).to_be_hidden()
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    screenshot(page, "chat-phone", tmp_path)

    menu.click()
    expect(side).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.locator(f"#conv-{site.seeded[0]}")).to_be_in_viewport()
    assert focused(page)["drawer"] == "true", "the focus moves into the drawer"
    screenshot(page, "chat-phone-conversations", tmp_path)

    page.keyboard.press("Escape")  # Esc closes it, and the focus returns to the menu button
    expect(side).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    assert focused(page)["id"] == "menu"

    menu.click()  # picking a conversation opens it and closes the drawer
    page.locator(f"#conv-{site.seeded[1]} .conversation-link").click()
    expect(page.locator("[data-testid=thread-title]")).to_have_text("Explain **Markdown** lists")
    expect(side).to_be_hidden()
    assert conversation_id(page) == site.seeded[1]
    assert focused(page)["drawer"] == "false"

    # The thread fits the phone: nothing scrolls sideways.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"


def test_a_new_conversation_is_listed_as_soon_as_the_server_makes_it(site: Site, context_for: Any) -> None:
    page = context_for()
    sign_in(page, site.server, site.key)
    pick_model(page, "dripper")  # 200 words, one every 150 ms: still answering while we look
    page.fill("[data-testid=message-input]", "Name three rivers in Portugal")
    page.click("[data-testid=send]")
    expect(page.locator("article.msg.assistant.streaming")).to_have_count(1)
    page.wait_for_url("**/?c=*")
    item = page.locator(f"#conv-{conversation_id(page)}")
    expect(item).to_contain_text("Name three rivers in Portugal", timeout=3_000)
    expect(item).to_have_class("conversation active")
    assert page.locator("article.msg.assistant.streaming").count() == 1, "listed before the answer ended"
    page.click("[data-chat-stop]")
    expect(page.locator("article.msg.assistant.streaming")).to_have_count(0)


# --- keyboard only ---------------------------------------------------------------------------------


def test_the_keyboard_alone_sends_breaks_lines_and_stops_with_focus_visible(
    site: Site, context_for: Any
) -> None:
    page = context_for()
    sign_in(page, site.server, site.key)
    pick_model(page, "talker")

    # From the top: the skip link first, then the sidebar in reading order.
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "skip-link"
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "new-chat"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # the skip link puts the focus in the message box
    assert focused(page)["id"] == "message-input"

    # The composer in order, each control with a visible focus ring (not the browser's faint default).
    seen = []
    for _ in range(4):
        now = focused(page)
        assert now["outline"] == "solid", now
        assert now["width"] != "0px", now
        seen.append(now["id"])
        page.keyboard.press("Tab")
    assert seen == ["message-input", "endpoint-picker", "summary", "send"], seen

    # Shift+Enter breaks the line, Enter sends.
    page.focus("[data-testid=message-input]")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("[data-testid=message-input]") == "first line\nsecond line"
    page.keyboard.press("Enter")
    expect(page.locator("article.msg.user .body").last).to_have_text("first line\nsecond line")
    expect(page.locator("article.msg.assistant [data-testid=reply]").last).to_have_text(REPLY)
    assert page.input_value("[data-testid=message-input]") == ""

    # Esc stops an answer midway.
    pick_model(page, "dripper")
    page.focus("[data-testid=message-input]")
    page.keyboard.type("Count to two hundred")
    page.keyboard.press("Enter")
    streaming = page.locator("article.msg.assistant.streaming .body")
    expect(streaming).to_contain_text("w3")
    page.keyboard.press("Escape")
    expect(page.locator("article.msg.assistant.streaming")).to_have_count(0, timeout=3_000)
    assert "w199" not in page.locator("article.msg.assistant").last.inner_text()
    assert focused(page)["id"] == "message-input"


# --- dark mode and accessibility -------------------------------------------------------------------


def test_dark_mode_follows_the_system_on_the_chat_and_sign_in_pages(
    site: Site, context_for: Any, tmp_path: Path
) -> None:
    page = context_for(DESKTOP, "dark")
    page.goto(f"{site.server.url}/login")
    assert luminance(page, "body") < 0.05
    assert luminance(page, ".auth-card") < 0.05
    assert luminance(page, ".auth-card h1", "color") > 0.2
    assert luminance(page, "#key-form input[name=api_key]") < 0.05
    sign_in(page, site.server, site.key)
    page.goto(f"{site.server.url}/?c={site.seeded[1]}")
    for selector in ("body", ".chat-side", ".composer", "article.msg.assistant", "textarea"):
        assert luminance(page, selector) < 0.05, selector
    assert luminance(page, "article.msg.assistant .body", "color") > 0.6
    screenshot(page, "chat-dark", tmp_path)

    light = context_for(DESKTOP, "light")
    light.goto(f"{site.server.url}/login")
    assert luminance(light, "body") > 0.8


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_chat_and_sign_in_pages(
    site: Site, context_for: Any, scheme: str
) -> None:
    found = {}
    page = context_for(DESKTOP, scheme)
    page.goto(f"{site.server.url}/login")
    found["login"] = serious_violations(page)
    sign_in(page, site.server, "fmk-not-a-key")
    expect(page.locator(".flash.error")).to_be_visible()
    found["login refused"] = serious_violations(page)
    sign_in(page, site.server, site.key)
    page.goto(f"{site.server.url}/?c={site.seeded[1]}")
    reply = page.locator("article.msg.assistant").first
    reply.locator("[data-testid=thumbs-up]").click()
    expect(reply.locator("[data-testid=feedback-saved]")).to_be_visible()
    reply.locator(".fb-more summary").click()  # the feedback forms too
    found["chat"] = serious_violations(page)
    page.goto(f"{site.server.url}/?c={site.failed}")
    expect(page.locator("[data-testid=reply-error]")).to_be_visible()
    found["failed answer"] = serious_violations(page)
    page.goto(f"{site.server.url}/")
    found["new chat"] = serious_violations(page)

    phone = context_for(PHONE, scheme)
    sign_in(phone, site.server, site.key)
    phone.locator("[data-testid=menu]").click()
    expect(phone.locator(".chat-side")).to_be_visible()
    found["phone drawer"] = serious_violations(phone)
    assert not any(found.values()), found


def test_the_console_follows_the_systems_dark_mode_too(site: Site, context_for: Any) -> None:
    """The console's pages share the chat's colours (app.css's variables): dark when the system is,
    with nothing of serious impact for axe-core (text contrast included) on a few of its pages."""
    page = context_for(DESKTOP, "dark")
    sign_in(page, site.server, site.server.admin_key)
    found = {}
    for path in ("/console/models", "/console/traces"):
        page.goto(f"{site.server.url}{path}")
        for selector in ("body", ".topbar", ".sidebar", ".content"):
            assert luminance(page, selector) < 0.05, (path, selector)
        assert luminance(page, ".content h1", "color") > 0.6, path
        found[path] = serious_violations(page)
    assert not any(found.values()), found
