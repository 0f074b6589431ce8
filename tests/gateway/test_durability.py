"""Traces survive the server being killed: every 2xx in strict mode, all but the last moments otherwise."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from support.gateway import GATEWAY_ENV, add_models, openai_model, read_span
from support.mock_upstream import MockUpstream
from support.server import RunningServer, start_server

# The buffered writer flushes every 50 ms; anything answered longer ago than this must be stored.
BUFFERED_LOSS_WINDOW_S = 0.5


def _load(server: RunningServer, stop: threading.Event, answered: list[tuple[float, str]]) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    "/v1/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    timeout=5,
                )
            except httpx.HTTPError:
                continue  # the server is being killed
            if response.status_code == 200:
                answered.append((time.monotonic(), response.headers["x-fmops-trace-id"]))


def _kill_under_load(
    home: Path, env: dict[str, str], mock: MockUpstream
) -> tuple[float, list[tuple[float, str]]]:
    """Run 4 clients for a second and SIGKILL the server while they run; (kill time, 2xx answers)."""
    answered: list[tuple[float, str]] = []
    stop = threading.Event()
    with start_server(home, env) as server:
        add_models(home, {"m": openai_model("mock-model", mock.url)})
        clients = [threading.Thread(target=_load, args=(server, stop, answered)) for _ in range(4)]
        for thread in clients:
            thread.start()
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for thread in clients:
            thread.join()
    assert len(answered) > 50, "the load did not run"
    return killed_at, answered


def _stored_traces(home: Path) -> set[str]:
    with sqlite3.connect(home / "fmops.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {row[0] for row in conn.execute("SELECT trace_id FROM spans")}


def test_strict_mode_keeps_the_trace_of_every_2xx_through_sigkill(tmp_path: Path, mock: MockUpstream) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**GATEWAY_ENV, "FMOPS_TRACE_DURABILITY": "strict"}
    _, answered = _kill_under_load(home, env, mock)
    with start_server(home, env):  # restart: migrations and recovery run on the killed database
        stored = _stored_traces(home)
    missing = {trace for _, trace in answered} - stored
    assert not missing, f"{len(missing)} of {len(answered)} answered calls lost their trace"


def test_buffered_mode_loses_at_most_the_last_moments_before_sigkill(
    tmp_path: Path, mock: MockUpstream
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    killed_at, answered = _kill_under_load(home, dict(GATEWAY_ENV), mock)
    stored = _stored_traces(home)
    lost = [(at, trace) for at, trace in answered if trace not in stored]
    print(f"buffered mode: {len(lost)} of {len(answered)} answered calls lost their trace at SIGKILL")
    assert all(killed_at - at < BUFFERED_LOSS_WINDOW_S for at, _ in lost), (
        "a trace older than the window was lost"
    )


def test_a_call_with_a_traceparent_joins_the_callers_trace(tmp_path: Path, mock: MockUpstream) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with start_server(home, GATEWAY_ENV) as server:
        add_models(home, {"m": openai_model("mock-model", mock.url)})
        trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        with server.client() as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            joined = client.post(
                "/v1/chat/completions", json=body, headers={"traceparent": f"00-{trace_id}-{parent}-01"}
            )
            invalid = client.post(
                "/v1/chat/completions", json=body, headers={"traceparent": f"00-{'0' * 32}-{parent}-01"}
            )
        assert joined.status_code == 200, joined.text
        assert joined.headers["x-fmops-trace-id"] == trace_id
        span = read_span(server, trace_id)
        assert span["parent_span_id"] == parent
        # An invalid traceparent is ignored, as W3C asks: the call starts a trace of its own.
        assert invalid.status_code == 200
        assert invalid.headers["x-fmops-trace-id"] != "0" * 32
        assert read_span(server, invalid.headers["x-fmops-trace-id"])["parent_span_id"] is None


@pytest.fixture(autouse=True)
def _reset_mock(mock: MockUpstream) -> None:
    mock.reset()
