"""OTLP ingest pushes back instead of queueing without end: while the trace store cannot keep up
(here: another process holds SQLite's write lock), a batch beyond about a second of writing waits
for room, and gets a 503 with Retry-After (which OTLP exporters retry) if none comes within
BUSY_WAIT_SECONDS; once it catches up, batches are accepted again and nothing accepted is lost."""

from __future__ import annotations

import sqlite3
import threading
import time
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


def test_a_batch_held_for_room_is_accepted_when_the_store_catches_up(tmp_path: Path) -> None:
    """Backpressure without refusals: a batch that arrives while the queue is full waits, and is
    accepted (200) as soon as the writer frees room, within the wait."""
    env = {"FMOPS_WORKERS": "0", "FMOPS_KEY_CACHE_SECONDS": "60", "FMOPS_TRACE_MEMORY_SPANS": "4000"}
    with start_server(tmp_path, env) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"}

        def send() -> tuple[httpx.Response, float]:
            body = json_body(*(json_span(f"step {i}", trace=trace_id()) for i in range(BATCH)))
            started = time.monotonic()
            response = httpx.post(server.url + "/v1/traces", content=body, headers=headers, timeout=30)
            return response, time.monotonic() - started

        assert send()[0].status_code == 200
        time.sleep(0.5)  # written (the writer flushes every 50 ms): the queue is empty
        lock = sqlite3.connect(tmp_path / "fmops.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        released = False
        try:
            # Fill the queue up to the backlog mark (2,000 spans here): each is accepted at once.
            quick = [send() for _ in range(20)]
            assert all(r.status_code == 200 for r, _ in quick), [r.status_code for r, _ in quick]
            held: list[tuple[httpx.Response, float]] = []
            sender = threading.Thread(target=lambda: held.append(send()))
            sender.start()
            time.sleep(0.6)  # the batch is waiting for room now
            assert not held
            lock.execute("ROLLBACK")
            released = True
            sender.join(timeout=30)
        finally:
            if not released:
                lock.execute("ROLLBACK")
            lock.close()
        response, took = held[0]
        assert response.status_code == 200, response.text
        assert took >= 0.5  # it was held, not answered at once
