"""One fault-injecting upstream and one real SQLite server shared by the reliability suite.

Starting `fmops up` costs seconds of CPU; the fault, disconnect, lock and concurrent-writer tests
share one (tests that kill or cut off a server start their own). Each test uses models of its own,
with distinct upstream names, so one test's failures never cool down another's model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.gateway import gateway_server
from support.mock_upstream import MockUpstream, run_mock_upstream
from support.reliability import BREAKER_COOLDOWN, BREAKER_THRESHOLD, MODELS, RELIABILITY_ENV, add_models
from support.server import RunningServer


@pytest.fixture(scope="package")
def upstream() -> Iterator[MockUpstream]:
    with run_mock_upstream() as running:
        yield running


@pytest.fixture(scope="package")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`fmops up` on SQLite with one job worker; buffered trace durability (the default)."""
    env = {
        **RELIABILITY_ENV,
        "FMOPS_WORKERS": "1",
        "FMOPS_BREAKER_THRESHOLD": str(BREAKER_THRESHOLD),
        "FMOPS_BREAKER_COOLDOWN_SECONDS": str(BREAKER_COOLDOWN),
    }
    with gateway_server(tmp_path_factory.mktemp("reliability"), env) as running:
        add_models(running, upstream.url, MODELS)
        yield running


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: MockUpstream) -> None:
    upstream.reset()
    upstream.state.down.add("down-503")
