"""`fmops up --gateway-workers 2`, twice, on one PostgreSQL database and one Redis: four server
processes behind two ports. Under concurrent load a key's requests-per-minute limit holds within 5%,
calls racing for a budget's last units overshoot it by at most one call's estimated cost, and a
revoked key stops working on every process within 5 seconds. Then a killed process is started
again, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from fmops.errors import ConfigError
from fmops.server.runner import check_gateway_workers
from fmops.settings import load_settings
from support.databases import postgres_database
from support.gateway import add_models, async_sdk, gateway_server, openai_model
from support.mock_upstream import MockUpstream
from support.redisdb import REDIS_URL
from support.server import RunningServer
from support.services import unavailable

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

MESSAGES: Any = [{"role": "user", "content": "hello there"}]
# One output token costs 1.00 and the mock answers 5 tokens: a call costs 5.00. A call asks for at
# most MAX_TOKENS, so the gateway holds MAX_TOKENS x 1.00 on the budget while it runs.
MAX_TOKENS = 8
CALL_COST = 5.0


@pytest.fixture(scope="module")
def shared() -> Iterator[dict[str, str]]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_URL}: {type(exc).__name__}")
    prefix = f"fmops-test:{uuid.uuid4().hex[:12]}:"
    with postgres_database(migrated=True) as url:
        yield {
            "FMOPS_DATABASE_URL": url,
            "FMOPS_REDIS_URL": REDIS_URL,
            "FMOPS_REDIS_PREFIX": prefix,
            "FMOPS_SECRET_KEY": Fernet.generate_key().decode(),
            "FMOPS_GATEWAY_WORKERS": "2",
        }
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="module")
def servers(
    shared: dict[str, str], mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    home_a, home_b = tmp_path_factory.mktemp("workers-a"), tmp_path_factory.mktemp("workers-b")
    with gateway_server(home_a, shared) as a:
        (home_a / "fmops.toml").write_text(
            f'database_url = "{shared["FMOPS_DATABASE_URL"]}"\nsecret_key = "{shared["FMOPS_SECRET_KEY"]}"\n'
        )
        add_models(
            home_a,
            {
                "free": openai_model("ok-free", mock.url),
                "priced": openai_model("ok-priced", mock.url, "--output-price", "1000000"),
            },
        )
        (home_b / "admin.key").write_text(a.admin_key)  # the shared database has its admin key
        with gateway_server(home_b, shared) as b:
            yield a, b


def server_processes(server: RunningServer) -> list[int]:
    """The pids of the server processes: forked by multiprocessing's fork server, itself a child of
    `fmops up` (its other helper, the resource tracker, left out)."""

    def children(pid: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            return []

    def forkserver(pid: int) -> bool:
        try:
            return b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return False

    servers = [pid for pid in children(server.proc.pid) if forkserver(pid)]
    return [pid for fs in servers for pid in children(fs)]


def new_key(server: RunningServer, name: str, limits: dict[str, Any]) -> tuple[str, str]:
    with server.client() as admin:
        created = admin.post("/api/keys", json={"name": name, "role": "consumer"})
        assert created.status_code == 201, created.text
        body = created.json()
        changed = admin.patch(f"/api/keys/{body['id']}/limits", json=limits)
        assert changed.status_code == 200, changed.text
    return str(body["id"]), str(body["key"])


async def burst(
    servers: tuple[RunningServer, ...], key: str, model: str, calls: int, concurrency: int
) -> list[str]:
    """`calls` chat calls spread over the servers, `concurrency` at a time: "ok" or the error code."""
    clients = [async_sdk(s, key) for s in servers]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            try:
                await clients[i % len(clients)].chat.completions.create(
                    model=model, messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except openai.APIStatusError as exc:
                return f"{exc.status_code} {exc.code}"
            return "ok"

    try:
        return list(await asyncio.gather(*(one(i) for i in range(calls))))
    finally:
        for client in clients:
            await client.close()


def test_more_than_one_process_without_redis_is_refused(tmp_path: Path) -> None:
    settings = load_settings({"home": tmp_path, "gateway_workers": 2, "redis_url": None})
    with pytest.raises(ConfigError, match="FMOPS_REDIS_URL"):
        check_gateway_workers(settings)


def test_each_server_runs_two_processes_on_its_port(servers: tuple[RunningServer, RunningServer]) -> None:
    for server in servers:
        assert len(server_processes(server)) == 2, server.log_text()[-2000:]


def test_requests_per_minute_hold_across_processes_and_replicas(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    limit = 120
    _, key = new_key(servers[0], "workers-rpm", {"rpm_limit": limit})
    # The window slides over minute buckets: a burst is counted exactly inside one bucket, and one
    # ending f seconds into the next passes about limit * f / 60 more; start none in a bucket's last 8 s.
    if time.time() % 60 > 52:
        time.sleep(60.2 - time.time() % 60)
    outcomes = asyncio.run(burst(servers, key, "free", calls=limit + limit // 2, concurrency=16))
    accepted = outcomes.count("ok")
    assert set(outcomes) <= {"ok", "429 rate_limit_exceeded"}, set(outcomes)
    assert abs(accepted - limit) <= 0.05 * limit, accepted


def test_racing_calls_overshoot_a_budget_by_at_most_one_call(
    servers: tuple[RunningServer, RunningServer], shared: dict[str, str]
) -> None:
    budget = 12.0  # one call spent (5.00), then 7.00 left: less than two calls
    key_id, key = new_key(servers[0], "workers-budget", {"budget": budget, "budget_period": "total"})
    assert asyncio.run(burst(servers[:1], key, "priced", calls=1, concurrency=1)) == ["ok"]
    outcomes = asyncio.run(burst(servers, key, "priced", calls=50, concurrency=50))
    assert set(outcomes) <= {"ok", "429 insufficient_quota"}, set(outcomes)
    accepted = 1 + outcomes.count("ok")
    engine = create_engine(shared["FMOPS_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as conn:
                spent = conn.execute(
                    text("SELECT coalesce(sum(cost), 0) FROM spend WHERE scope = :s AND period = 'total'"),
                    {"s": f"key:{key_id}"},
                ).scalar()
            if spent == pytest.approx(accepted * CALL_COST) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        engine.dispose()
    assert spent == pytest.approx(accepted * CALL_COST)
    assert spent <= budget + MAX_TOKENS * 1.0  # at most one call's estimated (maximum) cost over


def test_a_revoked_key_stops_working_on_every_process_within_5_seconds(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    key_id, key = new_key(servers[0], "workers-revoke", {})
    # Every process verifies (and caches) the key: calls land on both processes of each server.
    assert set(asyncio.run(burst(servers, key, "free", calls=24, concurrency=8))) == {"ok"}
    with servers[1].client() as admin:
        assert admin.delete(f"/api/keys/{key_id}").status_code == 200
    revoked = time.monotonic()
    last_ok = revoked
    clients = [httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}) for s in servers]
    try:
        while time.monotonic() - revoked < 5.0:
            for client in clients:
                sent = time.monotonic()
                if client.get("/v1/models").status_code == 200:
                    last_ok = sent
            time.sleep(0.02)
        statuses = {c.get("/v1/models").status_code for c in clients for _ in range(10)}
    finally:
        for client in clients:
            client.close()
    # From 5 s on, no process of either server takes it (last accepted: last_ok - revoked seconds).
    assert statuses == {401}, last_ok - revoked


def test_a_killed_process_is_replaced_and_sigterm_stops_all(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    server = servers[1]
    before = server_processes(server)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = server_processes(server)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the killed process was not replaced:\n{server.log_text()[-2000:]}")
    with server.client() as admin:
        assert admin.get("/api/keys").status_code == 200
    survivors = server_processes(server)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not [pid for pid in survivors if Path(f"/proc/{pid}").exists()]
