"""Fixtures of the endpoint tests (helpers live in support.endpoint_world).

One database per test module and backend: creating and migrating a PostgreSQL database costs
seconds, so the tests of a module share one project and use names of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext

import pytest

from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store, upgrade
from support.databases import postgres_database, sqlite_url
from support.endpoint_world import EndpointWorld, endpoint_world
from support.mock_upstream import MockUpstream


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ep_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mock: MockUpstream
) -> Iterator[EndpointWorld]:
    """The default project with models `small`, `other`, `strict` (json_schema) on the mock upstream,
    prompt `support` (version 1 production, 2 staging) and `extract` (with an output schema)."""
    folder = tmp_path_factory.mktemp(f"endpoints-{request.param}")
    database = postgres_database() if request.param == "postgresql" else nullcontext(sqlite_url(folder))
    with database as url:
        store = Store(url)
        upgrade(store)
        settings = load_settings({"home": folder / "home", "database_url": url, "key_cache_seconds": 0})
        platform = Platform.build(settings, store)
        try:
            yield endpoint_world(platform, mock)
        finally:
            assert platform.gateway.endpoints is not None
            platform.gateway.endpoints.close()
            store.dispose()


@pytest.fixture
async def w(ep_world: EndpointWorld) -> AsyncIterator[EndpointWorld]:
    """The world for one async test: a fresh mock upstream, and the gateway's clients closed after
    (each test runs on an event loop of its own)."""
    ep_world.mock.reset()
    yield ep_world
    await ep_world.platform.gateway.close()
