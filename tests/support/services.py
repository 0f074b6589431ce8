"""Why a test may skip: one place, so CI (FMOPS_TEST_REQUIRE_SERVICES=1) can refuse every other skip.

- `unavailable(reason)`: something the test needs is missing here (PostgreSQL, Redis, Chromium, an
  optional package, a model). A skip locally, a failure in CI.
- `require_module(name, why)`: import an optional package, or `unavailable`.
- `not_applicable(reason)`: this parametrisation has nothing to check (SQLite pragmas on
  PostgreSQL). A skip everywhere.
- `long_only`: a long variant, run by `make test-long` (FMOPS_TEST_LONG=1). A skip everywhere else.

Any other skip (a bare `pytest.skip`, `importorskip`, `skipif`) fails in CI: the two report hooks
below, which tests/conftest.py installs, see to it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Generator
from types import ModuleType
from typing import Any, NoReturn

import pytest

REQUIRED = os.environ.get("FMOPS_TEST_REQUIRE_SERVICES") == "1"
LONG = os.environ.get("FMOPS_TEST_LONG") == "1"
_NOT_APPLICABLE = "not applicable: "
_LONG_ONLY = "long variant: "

long_only = pytest.mark.skipif(not LONG, reason=_LONG_ONLY + "set FMOPS_TEST_LONG=1 (make test-long)")


def unavailable(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"{reason} (FMOPS_TEST_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, why: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = f"{name} cannot be imported ({exc}): {why}"
    unavailable(missing)


def not_applicable(reason: str) -> NoReturn:
    pytest.skip(_NOT_APPLICABLE + reason)


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_unexcused_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """In CI, turn a skip that is neither `not_applicable` nor `long_only` into a failure."""
    if not REQUIRED or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if reason.startswith((_NOT_APPLICABLE, _LONG_ONLY)):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped: {reason}\nFMOPS_TEST_REQUIRE_SERVICES=1 makes a skip a failure; a test that may skip says "
        "why through tests/support/services.py (unavailable, not_applicable, long_only)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fail_unexcused_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield  # a module-level importorskip is a skipped collection
    fail_unexcused_skip(report)
    return report
