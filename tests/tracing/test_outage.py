"""The database goes away under load: calls keep being answered, spans spool to disk within the memory
bound, and every one is written once the database is back, without restarting the server."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.databases import postgres_database
from support.gateway import GATEWAY_ENV, cli_env, openai_model, wait_for
from support.mock_upstream import MockUpstream
from support.server import FMOPS, start_server
from support.tcp_proxy import tcp_proxy

CALLS = 300
MEMORY_SPANS = 100


def _metric(client: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name}(?:_total)? (\S+)$", client.get("/metrics").text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_postgres_outage_spools_spans_and_writes_them_when_it_returns(
    tmp_path: Path, mock: MockUpstream
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with postgres_database() as direct_url:
        url = make_url(direct_url)
        with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            env = {
                **GATEWAY_ENV,
                "FMOPS_DATABASE_URL": proxied,
                # Keys and models are cached for the outage: calls need no database to be answered.
                "FMOPS_KEY_CACHE_SECONDS": "60",
                "FMOPS_MODEL_CACHE_SECONDS": "60",
                "FMOPS_TRACE_MEMORY_SPANS": str(MEMORY_SPANS),
            }
            with start_server(home, env) as server:
                add = subprocess.run(
                    [str(FMOPS), "models", "add", "m", *openai_model("mock-model", mock.url)],
                    env={**cli_env(home), "FMOPS_DATABASE_URL": direct_url},
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert add.returncode == 0, add.stderr
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                with server.client() as client:
                    first = client.post("/v1/chat/completions", json=body)
                    assert first.status_code == 200, first.text
                    assert _metric(client, "fmops_trace_store_up") == 1

                    proxy.cut()
                    traces = [first.headers["x-fmops-trace-id"]]
                    for _ in range(CALLS):
                        answer = client.post("/v1/chat/completions", json=body)
                        assert answer.status_code == 200, answer.text
                        traces.append(answer.headers["x-fmops-trace-id"])
                    assert wait_for(lambda: _metric(client, "fmops_trace_store_up") == 0, timeout=40)
                    spooled = _metric(client, "fmops_trace_spooled")
                    assert spooled >= CALLS - MEMORY_SPANS  # beyond the memory bound, spans went to disk
                    assert list((home / "spool").iterdir())

                    proxy.restore()
                    engine = create_engine(direct_url)
                    try:

                        def stored() -> int:
                            with engine.connect() as conn:
                                query = text("SELECT count(*) FROM spans WHERE trace_id = ANY(:ids)")
                                return int(conn.execute(query, {"ids": traces}).scalar_one())

                        started = time.monotonic()
                        assert wait_for(lambda: stored() == len(traces), timeout=60, interval=0.5), stored()
                        took = time.monotonic() - started
                        print(f"{len(traces)} spans written {took:.1f}s after the database returned")
                    finally:
                        engine.dispose()
                    assert _metric(client, "fmops_spans_dropped") == 0
                    assert wait_for(lambda: _metric(client, "fmops_trace_spooled") == 0, timeout=10)
                    # The pool recovered by itself: routes that need the database work again.
                    assert client.get("/api/traces", params={"limit": 1}).status_code == 200
