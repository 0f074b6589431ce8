"""Fixtures of the web UI tests: one Chromium per test module, a fresh browser context per test
(defined in support.browser, shared with the annotation tests)."""

from __future__ import annotations

from support.browser import browser, page

__all__ = ["browser", "page"]
