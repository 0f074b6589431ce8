"""Fixtures of the annotation tests: a store-level world on both backends, and a browser (the web
tests' fixtures, from support.browser)."""

from __future__ import annotations

import pytest

from fmops.platform import Platform
from support.annotation_world import World, make_world
from support.browser import browser, page

__all__ = ["browser", "page"]


@pytest.fixture
def world(platform: Platform) -> World:
    return make_world(platform)
