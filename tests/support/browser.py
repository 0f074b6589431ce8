"""Browser tests: Playwright driving Debian's Chromium (headless) against a real `fmops up` server.

Playwright downloads no browser here: it launches /usr/bin/chromium, which `make test` installs
from Debian's packages. Without it the tests skip locally and fail in CI (support.services).
Screenshots are taken on every run; `make screenshots` (FMOPS_UPDATE_SCREENSHOTS=1) also copies them
to docs/screenshots for the README.

The `browser` and `page` fixtures live here; a test folder's conftest.py imports them
(`from support.browser import browser, page`) to use them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import select

from support.server import RunningServer
from support.services import unavailable

CHROMIUM = os.environ.get("FMOPS_TEST_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("FMOPS_UPDATE_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1280, "height": 800}


def launch() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        unavailable(
            f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium chromium-driver)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module. Per module, not per session: Playwright's sync API keeps an event
    loop running in this thread while it is open, and a test of another file on the same xdist worker
    that calls asyncio.run() would fail under it."""
    yield from launch()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A new context per test: no cookie or storage leaks from one test into the next."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, server: RunningServer, key: str) -> None:
    """Sign in through the real form, as a person would."""
    page.goto(f"{server.url}/login")
    page.fill("#key-form input[name=api_key]", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_load_state("domcontentloaded")


def create_user_key(server: RunningServer, name: str, role: str) -> str:
    """A user with `role` in the default project and a key of theirs (made by the admin key)."""
    with server.client() as client:
        created = client.post("/api/users", json={"name": name, "role": role})
        assert created.status_code in (201, 409), created.text
        key = client.post("/api/keys", json={"name": f"{name}-key", "user": name, "role": role})
        assert key.status_code == 201, key.text
        return str(key.json()["key"])


def web_session(server: RunningServer, key: str) -> tuple[httpx.Client, str]:
    """An HTTP client signed in to the web UI with `key` (through the real form), and its CSRF token."""
    client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)
    assert client.post("/login", data={"api_key": key}).status_code == 303
    token = re.search(r'data-csrf="([^"]+)"', client.get("/").text)
    assert token is not None
    return client, token.group(1)


def member_session(server: RunningServer, name: str, role: str, password: str) -> tuple[httpx.Client, str]:
    """A member `name` with `role` and a password, signed in to the web UI with the password (a
    session with no key), and its CSRF token."""
    from fmops.auth import AuthService
    from fmops.auth.sessions import SessionService
    from fmops.store.models import User
    from support.security import server_store

    create_user_key(server, name, role)
    with server_store(server) as store:
        with store.session() as session:
            user_id = session.scalars(select(User.id).where(User.name == name)).one()
        SessionService(store, AuthService(store), hours=1).set_password(user_id, password)
    client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)
    assert client.post("/login", data={"username": name, "password": password}).status_code == 303
    token = re.search(r'data-csrf="([^"]+)"', client.get("/").text)
    assert token is not None
    return client, token.group(1)


def screenshot(page: Page, name: str, tmp_dir: Path) -> Path:
    """Save a screenshot (always, under tmp_dir); with FMOPS_UPDATE_SCREENSHOTS=1 also into docs/."""
    path = tmp_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 5_000, "the screenshot is blank"
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def watch_dialogs(page: Page) -> list[str]:
    """Record every alert/confirm/prompt the page opens; an XSS payload's alert() lands here.

    Confirm dialogs that the UI opens on purpose (delete?) are accepted; tests check the list.
    """
    opened: list[str] = []

    def on_dialog(dialog) -> None:  # type: ignore[no-untyped-def]
        opened.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", on_dialog)
    return opened


def api(server: RunningServer, key: str | None = None) -> httpx.Client:
    return server.client(key)
