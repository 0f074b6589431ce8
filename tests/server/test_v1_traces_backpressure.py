"""OTLP ingest pushes back instead of queueing without end: while the trace store cannot keep up
(here: another process holds SQLite's write lock), batches beyond about a second of writing get a
503 with Retry-After, which OTLP exporters retry; once it catches up, batches are accepted again and
nothing accepted is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from support.gateway import wait_for
from support.otlp import json_body, json_span, trace_id
from support.server import start_server

BATCH = 100


def test_ingest_answers_503_with_retry_after_while_the_store_is_behind(tmp_path: Path) -> None:
    env = {"FMOPS_WORKERS": "0", "FMOPS_KEY_CACHE_SECONDS": "60", "FMOPS_TRACE_MEMORY_SPANS": "1000"}
    with start_server(tmp_path, env) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"}
        accepted: list[str] = []

        def send() -> httpx.Response:
            trace = trace_id()
            body = json_body(*(json_span(f"step {i}", trace=trace) for i in range(BATCH)))
            response = httpx.post(server.url + "/v1/traces", content=body, headers=headers, timeout=30)
            if response.status_code == 200:
                accepted.append(trace)
            return response

        assert send().status_code == 200  # the key is verified (and cached) before the lock
        lock = sqlite3.connect(tmp_path / "fmops.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the writer now waits for the lock
        try:
            answers = [send() for _ in range(12)]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        refused = [a for a in answers if a.status_code == 503]
        assert refused, [a.status_code for a in answers]
        assert all(a.status_code in (200, 503) for a in answers)
        assert refused[0].headers["retry-after"] == "1"
        assert "retry" in refused[0].json()["error"]["message"]

        # Caught up: accepted again, and every batch that was accepted is stored.
        assert wait_for(lambda: send().status_code == 200, timeout=30, interval=0.2)

        def stored() -> int:
            with sqlite3.connect(tmp_path / "fmops.db", timeout=30) as conn:
                marks = ",".join("?" * len(accepted))
                query = f"SELECT count(*) FROM spans WHERE trace_id IN ({marks})"
                return int(conn.execute(query, accepted).fetchone()[0])

        assert wait_for(lambda: stored() == len(accepted) * BATCH, timeout=30, interval=0.2), stored()
