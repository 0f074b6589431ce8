"""Fixtures of the annotation tests: a store-level world on both backends, and a browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from fmops.platform import Platform
from support.annotation_world import World, make_world
from support.browser import VIEWPORT, launch


@pytest.fixture
def world(platform: Platform) -> World:
    return make_world(platform)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, as in tests/web: Playwright's sync loop must not outlive the module's tests.
    yield from launch()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
