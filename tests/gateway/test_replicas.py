"""Two gateway replicas on one PostgreSQL database and one Redis: limits, cache and spans are shared,
and a replica that is stopped right after answering still writes every span."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from support.databases import postgres_database
from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import MockUpstream
from support.redisdb import REDIS_URL
from support.server import RunningServer, stop_server
from support.services import unavailable

MESSAGES: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def shared() -> Iterator[dict[str, str]]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    prefix = f"fmops-test:{uuid.uuid4().hex[:12]}:"
    with postgres_database() as url:
        yield {
            "FMOPS_DATABASE_URL": url,
            "FMOPS_REDIS_URL": REDIS_URL,
            "FMOPS_REDIS_PREFIX": prefix,
            "FMOPS_SECRET_KEY": Fernet.generate_key().decode(),
        }
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def replicas(
    shared: dict[str, str], mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    home_a, home_b = tmp_path_factory.mktemp("replica-a"), tmp_path_factory.mktemp("replica-b")
    with gateway_server(home_a, shared) as a:
        add_models_shared(home_a, shared, mock)
        # The shared database already has its admin key: B does not make another.
        (home_b / "admin.key").write_text(a.admin_key)
        with gateway_server(home_b, shared) as b:
            yield a, b


def add_models_shared(home: Path, shared: dict[str, str], mock: MockUpstream) -> None:
    # The CLI reads $FMOPS_HOME/fmops.toml: point it at the shared database.
    (home / "fmops.toml").write_text(
        f'database_url = "{shared["FMOPS_DATABASE_URL"]}"\nsecret_key = "{shared["FMOPS_SECRET_KEY"]}"\n'
    )
    add_models(home, {"shared": openai_model("ok-shared", mock.url)})


def test_rate_limit_counts_across_replicas(replicas: tuple[RunningServer, RunningServer]) -> None:
    a, b = replicas
    with a.client() as admin:
        created = admin.post("/api/keys", json={"name": "shared-rpm", "role": "consumer"}).json()
        assert admin.patch(f"/api/keys/{created['id']}/limits", json={"rpm_limit": 2}).status_code == 200
    key = created["key"]
    sdk(a, key).chat.completions.create(model="shared", messages=MESSAGES)
    sdk(b, key).chat.completions.create(model="shared", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        sdk(a, key).chat.completions.create(model="shared", messages=MESSAGES)


def test_cache_filled_by_one_replica_answers_on_the_other(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    a, b = replicas
    body: Any = {"cache": {"ttl": 60}}
    first = sdk(a).chat.completions.with_raw_response.create(
        model="shared", messages=MESSAGES, extra_body=body
    )
    second = sdk(b).chat.completions.with_raw_response.create(
        model="shared", messages=MESSAGES, extra_body=body
    )
    assert first.headers["x-fmops-cache"] == "miss"
    assert second.headers["x-fmops-cache"] == "hit"


def test_a_replica_stopped_right_after_answering_writes_every_span(
    replicas: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    _, b = replicas
    client = sdk(b)

    def call(_: int) -> str:
        raw = client.chat.completions.with_raw_response.create(model="shared", messages=MESSAGES)
        return raw.headers["x-fmops-trace-id"]

    with ThreadPoolExecutor(8) as pool:
        trace_ids = list(pool.map(call, range(40)))
    assert stop_server(b.proc) == 0  # at once: spans may still be queued in the writer
    engine = create_engine(shared["FMOPS_DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM spans WHERE trace_id = ANY(:ids)"), {"ids": trace_ids}
        ).scalar()
    engine.dispose()
    assert stored == len(trace_ids)
