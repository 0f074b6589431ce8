"""SDK fixtures: every test starts with tracing unconfigured, as a new process does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fmops import sdk


@pytest.fixture(autouse=True)
def _fresh_tracing() -> Iterator[None]:
    """Each test starts with the SDK unconfigured, as a new process would."""
    sdk.shutdown()
    yield
    sdk.shutdown()
