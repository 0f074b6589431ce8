"""One real server per backend for the whole security suite (server starts dominate its time).

The server exports every span to a test OTLP collector, so the canary tests can read what left it,
and reads the catalog without caching, so models added by the operator path apply at once.
Upstream URLs keep their default policy: the API may not add loopback or private upstreams.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.databases import postgres_database
from support.hostile import Hostile, run_hostile
from support.otlp import Collector, run_collector
from support.security import Tenant, make_tenant
from support.server import RunningServer, start_server


@pytest.fixture(scope="package")
def collector() -> Iterator[Collector]:
    with run_collector() as running:
        yield running


@pytest.fixture(scope="package")
def hostile() -> Iterator[Hostile]:
    with run_hostile() as running:
        yield running


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[RunningServer]:
    env = {
        "FMOPS_OTLP_ENDPOINT": collector.url,
        "FMOPS_MODEL_CACHE_SECONDS": "0",
        "FMOPS_WORKERS": "0",
        "FMOPS_ACCESS_LOG": "true",  # the log then holds every path and query string: scanned for secrets
    }
    home = tmp_path_factory.mktemp(f"security-{request.param}")
    if request.param == "sqlite":
        with start_server(home, env) as running:
            yield running
    else:
        with postgres_database() as url, start_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            yield running


@pytest.fixture(scope="package")
def tenant_a(secured: RunningServer) -> Tenant:
    return make_tenant(secured, "alpha")


@pytest.fixture(scope="package")
def tenant_b(secured: RunningServer) -> Tenant:
    return make_tenant(secured, "beta")
