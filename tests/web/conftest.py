"""Fixtures of the web UI tests: one Chromium per test module, a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from support.browser import VIEWPORT, launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this thread
    # while it is open, and a test of another file on the same xdist worker that calls
    # asyncio.run() would fail under it.
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
