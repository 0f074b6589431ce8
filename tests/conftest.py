"""Fixtures shared by the whole suite: databases (SQLite and PostgreSQL), platforms and live servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fmops.counters import Counters
from fmops.counters.memory import MemoryCounters
from fmops.platform import Platform
from fmops.settings import load_settings
from fmops.store import Store
from support.databases import migrated_sqlite_url, postgres_database
from support.mock_upstream import MockUpstream, run_mock_upstream
from support.redisdb import redis_counters
from support.server import RunningServer, start_server
from support.services import pytest_make_collect_report, pytest_runtest_makereport

# In CI (FMOPS_TEST_REQUIRE_SERVICES=1) a skip fails unless it says why it may skip: see support/services.py.
__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the developer's ~/.fmops or a stray fmops.toml."""
    home = tmp_path_factory.mktemp("fmops-home")
    monkeypatch.setenv("FMOPS_HOME", str(home))
    for var in ("FMOPS_DATABASE_URL", "FMOPS_CONFIG", "FMOPS_REDIS_URL", "FMOPS_PORT", "FMOPS_HOST"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every store test runs on both backends, on a database of its own, migrated to head."""
    if request.param == "sqlite":
        yield migrated_sqlite_url(tmp_path)
    else:
        with postgres_database(migrated=True) as url:
            yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)  # already at head: see support/databases.py
    yield s
    s.dispose()


@pytest.fixture
def platform(store: Store, tmp_path: Path) -> Platform:
    settings = load_settings({"home": tmp_path / "home", "database_url": store.url, "key_cache_seconds": 0})
    return Platform.build(settings, store)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real `fmops up` process on a free port, on each backend, with the test job kinds loaded."""
    home = tmp_path_factory.mktemp("server-home")
    if request.param == "sqlite":
        with start_server(home) as running:
            yield running
    else:
        with postgres_database() as url, start_server(home, {"FMOPS_DATABASE_URL": url}) as running:
            yield running


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (marked anyio) run on asyncio, the loop the server uses."""
    return "asyncio"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    """Each counters backend: in-process, and Redis under a throw-away key prefix."""
    if request.param == "memory":
        yield MemoryCounters()
    else:
        async with redis_counters() as redis:
            yield redis


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    """A fault-injecting OpenAI-compatible upstream, one per test module."""
    with run_mock_upstream() as running:
        yield running


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server on SQLite, for tests that do not depend on the backend."""
    with start_server(tmp_path_factory.mktemp("server-home")) as running:
        yield running
