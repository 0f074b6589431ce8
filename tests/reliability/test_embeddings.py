"""Issue 12, item 4: `/v1/embeddings` traces its failures as chat does.

A database error during an embeddings call (PostgreSQL cut off while the model is looked up) is
answered 503 + Retry-After and leaves an error span, written once the database is back, on the ASGI
fast path and on the FastAPI route alike; in strict durability it was parked as "ok" and never
written. A client that hangs up while an embeddings call waits for its upstream stops the call,
which is traced as a client disconnect (it was traced "ok").
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.databases import postgres_database
from support.gateway import wait_for
from support.mock_upstream import MockUpstream
from support.reliability import RELIABILITY_ENV, add_models
from support.server import RunningServer, start_server
from support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fast_path", ["true", "false"], ids=["fast-path", "fastapi-route"])
def test_a_database_error_during_embeddings_is_answered_503_and_traced(
    upstream: MockUpstream, tmp_path: Path, fast_path: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    body = {"model": "outage-embed", "input": ["hello there"]}
    with postgres_database() as direct_url:
        url = make_url(direct_url)
        with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            env = {
                **RELIABILITY_ENV,
                "FMOPS_DATABASE_URL": proxied,
                "FMOPS_TRACE_DURABILITY": "strict",
                "FMOPS_MODEL_CACHE_SECONDS": "0",  # every call looks its model up in the database
                "FMOPS_KEY_CACHE_SECONDS": "30",  # while the key is known: the error is the gateway's
                "FMOPS_GATEWAY_FAST_PATH": fast_path,
            }
            with start_server(home, env) as server:
                add_models(
                    server, upstream.url, {"outage-embed": {"model": "embed-outage", "max_retries": 0}}
                )
                with server.client() as client:
                    ok = client.post("/v1/embeddings", json=body)
                    proxy.cut()
                    failed = client.post("/v1/embeddings", json=body)
                    proxy.restore()
                assert ok.status_code == 200, ok.text
                assert failed.status_code == 503, failed.text
                assert int(failed.headers["retry-after"]) >= 1
                assert failed.json()["error"]["code"] == "database_unavailable"
                engine = create_engine(direct_url)
                try:

                    def spans() -> list[tuple[str, str | None]]:
                        with engine.connect() as conn:
                            query = text(
                                "SELECT status, status_message FROM spans "
                                "WHERE model = 'outage-embed' AND kind = 'embedding' ORDER BY start_time"
                            )
                            return [(r[0], r[1]) for r in conn.execute(query)]

                    assert wait_for(lambda: len(spans()) == 2, timeout=20, interval=0.2), spans()
                finally:
                    engine.dispose()
                assert spans() == [("ok", None), ("error", "the metadata database is unavailable")]
                assert "unhandled error" not in server.log_text()


def test_an_abandoned_embeddings_call_is_stopped_and_traced_as_a_disconnect(
    gateway: RunningServer, upstream: MockUpstream
) -> None:
    add_models(gateway, upstream.url, {"late-embed": {"model": "slow-2000", "max_retries": 0}})
    tag = f"abandoned {uuid.uuid4().hex}"

    async def hang_up() -> None:
        headers = {"Authorization": f"Bearer {gateway.admin_key}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as client:
            body = {"model": "late-embed", "input": [tag]}
            request = asyncio.ensure_future(client.post("/v1/embeddings", json=body))
            while not any(r["body"].get("input") == [tag] for r in reversed(upstream.state.requests)):
                assert not request.done(), "the call ended before it reached the upstream"
                await asyncio.sleep(0.01)
            request.cancel()  # httpx closes the connection of a cancelled request
            with contextlib.suppress(asyncio.CancelledError):
                await request

    asyncio.run(hang_up())

    def spans() -> list[tuple[str, str | None, float]]:
        with sqlite3.connect(gateway.home / "fmops.db", timeout=5) as conn:
            query = "SELECT status, status_message, latency_ms FROM spans WHERE model = 'late-embed'"
            return list(conn.execute(query))

    assert wait_for(lambda: len(spans()) == 1, timeout=5), spans()
    [(status, message, latency_ms)] = spans()
    assert (status, message) == ("error", "client disconnected")
    assert latency_ms < 1500  # stopped when the client left, not when the 2 s upstream answered
