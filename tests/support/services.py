"""Service availability: skip with a reason locally, fail in CI (FMOPS_TEST_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("FMOPS_TEST_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{reason} (FMOPS_TEST_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)
