"""Issue 12, items 1-4: strict trace durability keeps the span and spend of every call it answered.

`FMOPS_TRACE_DURABILITY=strict` promises: a call is admitted only while the trace store can take
its span (else 503 + Retry-After before the upstream is called); once the upstream has answered,
the span and its spend are committed before the answer leaves, or, past the commit deadline, fsync'd
to the spool (and the caller gets 503 + Retry-After), from which the next start writes them.

- The trace store stalls (SQLite's write lock held by another connection) just as a call is made:
  that call's upstream answers, its commit cannot finish, and it gets 503 + Retry-After within the
  5 s commit deadline (before: it waited for the lock, then lost its span with a 503); the calls
  after it are refused before the upstream is called; the server is then SIGKILLed, and the next
  start writes the spooled span with its spend.
- Streams and embeddings under SIGKILL: every stream that ended with `[DONE]` and no error event,
  and every embeddings call answered 200, has its span, whether the kill came during the load or
  right as a stream's `[DONE]` arrived; spend agrees with the spans.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from support.gateway import wait_for
from support.mock_upstream import MockUpstream
from support.reliability import MESSAGES, RELIABILITY_ENV, Load, add_models
from support.server import RunningServer, start_server

pytestmark = pytest.mark.slow

ENV = {**RELIABILITY_ENV, "FMOPS_TRACE_DURABILITY": "strict"}
PRICED = {"max_retries": 0, "input_price": 1.0, "output_price": 2.0}
# Distinct upstream names from the rest of the suite's (the mock is shared).
STRICT_MODELS = {
    "strict-chat": {"model": "ok-strict", **PRICED},
    "strict-trickle": {"model": "drip-4", **PRICED},  # 200 words over ~1 s: a kill lands mid-stream
    "strict-embed": {"model": "embed-strict", **PRICED},
}
COMMIT_DEADLINE_S = 5.0  # fmops.tracing.writer.COMMIT_SECONDS


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "fmops.db", timeout=30)


def _spans_and_spend(home: Path) -> tuple[dict[str, tuple[str, int]], tuple[int, int], tuple[int, int]]:
    """(trace id -> (status, input tokens), spans' (count, input tokens), spend's (requests, tokens))."""
    with _db(home) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT trace_id, status, input_tokens FROM spans").fetchall()
        spend = conn.execute(
            "SELECT sum(requests), sum(input_tokens) FROM spend "
            "WHERE scope LIKE 'project:%' AND period = 'total'"
        ).fetchone()
    traces = {trace: (status, tokens or 0) for trace, status, tokens in rows}
    return traces, (len(rows), sum(t for _, t in traces.values())), (spend[0] or 0, spend[1] or 0)


def _post(server: RunningServer, tag: str) -> tuple[httpx.Response, float]:
    body = {"model": "strict-chat", "messages": [{"role": "user", "content": tag}]}
    started = time.monotonic()
    with server.client() as client:
        resp = client.post("/v1/chat/completions", json=body, timeout=60)
    return resp, time.monotonic() - started


def _upstream_saw(upstream: MockUpstream, tag: str) -> bool:
    return any(r["body"].get("messages", [{}])[-1].get("content") == tag for r in upstream.state.requests)


def test_a_stalled_trace_store_refuses_before_the_upstream_and_keeps_the_late_span_through_sigkill(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with start_server(home, ENV) as server:
        add_models(server, upstream.url, {"strict-chat": STRICT_MODELS["strict-chat"]})
        ok, _ = _post(server, "before")
        assert ok.status_code == 200, ok.text
        holder = sqlite3.connect(home / "fmops.db", isolation_level=None, timeout=30)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, as a backup or a sqlite3 shell takes it
            holder.execute("UPDATE projects SET name = name")
            late, late_s = _post(server, "late")
            refused, refused_s = _post(server, "refused")
            os.killpg(server.proc.pid, signal.SIGKILL)  # with the lock still held: nothing committed
            server.proc.wait()
        finally:
            holder.close()
    # The upstream answered the late call, but its span could not be committed within the deadline:
    # 503 + Retry-After, the span kept on disk.
    assert late.status_code == 503, late.text
    assert COMMIT_DEADLINE_S - 0.5 < late_s < COMMIT_DEADLINE_S + 3, late_s
    assert int(late.headers["retry-after"]) >= 1
    assert "kept on disk" in late.json()["error"]["message"]
    assert _upstream_saw(upstream, "late")
    late_trace = late.headers["x-fmops-trace-id"]
    # The next call was refused before its upstream was called: nothing paid, nothing to record.
    assert refused.status_code == 503, refused.text
    assert refused_s < 2.0, refused_s
    assert int(refused.headers["retry-after"]) >= 1
    assert "the call was not made" in refused.json()["error"]["message"]
    assert not _upstream_saw(upstream, "refused")
    assert list((home / "spool").iterdir()), "the late span is not in the spool"

    with start_server(home, ENV):  # adopts the spool of the killed process
        assert wait_for(lambda: late_trace in _spans_and_spend(home)[0], timeout=15)
        traces, spans, spend = _spans_and_spend(home)
    assert traces[late_trace] == ("ok", 1)  # the upstream's answer, with its usage
    assert spans == spend, (spans, spend)  # spend was written with the span, once
    assert ok.headers["x-fmops-trace-id"] in traces


class _Caller:
    """Strict calls of one kind in a loop; each result is (trace id, answered in full)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, client: httpx.Client) -> tuple[str | None, bool]:
        try:
            if self.kind == "embed":
                resp = client.post(
                    "/v1/embeddings", json={"model": "strict-embed", "input": ["one two", "three"]}
                )
                return resp.headers.get("x-fmops-trace-id"), resp.status_code == 200
            model = "strict-trickle" if self.kind == "trickle" else "strict-chat"
            return _stream(client, model)
        except httpx.HTTPError:
            time.sleep(0.01)  # the server is being killed
            return None, False


def _stream(client: httpx.Client, model: str, on_done: Any = None) -> tuple[str | None, bool]:
    """A streamed call read to its end: (trace id, True when it ended with `[DONE]` and no error)."""
    body = {"model": model, "messages": MESSAGES, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        trace = resp.headers.get("x-fmops-trace-id")
        if resp.status_code != 200:
            return trace, False
        error = False
        try:
            for line in resp.iter_lines():
                if line == "data: [DONE]":
                    if on_done is not None:
                        on_done()
                    return trace, not error
                if line.startswith("data: ") and "error" in orjson.loads(line.removeprefix("data: ")):
                    error = True
        except httpx.HTTPError:
            pass  # the server was killed mid-stream
    return trace, False  # cut before [DONE]


def test_streams_and_embeddings_keep_every_answered_span_through_sigkill(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    answered: set[str] = set()
    cut: list[str | None] = []
    with start_server(home, ENV) as server:
        add_models(server, upstream.url, STRICT_MODELS)
        with (
            Load(server, _Caller("stream"), threads=1) as streams,
            Load(server, _Caller("trickle"), threads=2) as trickles,
            Load(server, _Caller("embed"), threads=1) as embeds,
        ):
            time.sleep(2.0)
            os.killpg(server.proc.pid, signal.SIGKILL)  # during the streams
            server.proc.wait()
        results = streams.results + trickles.results + embeds.results
    answered |= {trace for trace, whole in results if trace and whole}
    cut += [trace for trace, whole in results if trace and not whole]
    loads = {"stream": streams, "trickle": trickles, "embed": embeds}
    counts = {kind: sum(1 for t, whole in load.results if t and whole) for kind, load in loads.items()}
    assert min(counts["stream"], counts["embed"]) > 5, counts
    assert counts["trickle"] >= 1, counts

    # Right after a stream: the kill is sent the moment the client reads `[DONE]`.
    with start_server(home, ENV) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            trace, whole = _stream(
                client, "strict-chat", on_done=lambda: os.killpg(server.proc.pid, signal.SIGKILL)
            )
        server.proc.wait()
    assert trace, "no trace id"
    assert whole, "the stream did not end with [DONE]"
    answered.add(trace)

    with start_server(home, ENV):  # recovery, and the spool of the killed process adopted
        traces, spans, spend = _spans_and_spend(home)
    missing = answered - set(traces)
    print(
        f"strict SIGKILL: {len(answered)} calls answered in full {counts}, {len(cut)} cut by the kill; "
        f"{len(missing)} answered calls without their span"
    )
    assert not missing, f"{len(missing)} of {len(answered)} answered calls lost their span"
    assert all(traces[t][0] == "ok" for t in answered)
    assert spans == spend, (spans, spend)  # every stored call billed once, in its transaction


def test_a_client_hanging_up_mid_stream_in_strict_mode_leaves_its_span(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    """The upstream has streamed (and is paid): the span is kept though no one waits for `[DONE]`."""
    home = tmp_path / "home"
    home.mkdir()
    with start_server(home, ENV) as server:
        add_models(server, upstream.url, {"strict-trickle": STRICT_MODELS["strict-trickle"]})
        traces = []
        with server.client() as client:
            for _ in range(5):
                body = {"model": "strict-trickle", "messages": MESSAGES, "stream": True}
                with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                    traces.append(resp.headers["x-fmops-trace-id"])
                    for line in resp.iter_lines():
                        if '"content":" w3"' in line:
                            break  # leaving the block closes the connection mid-stream

        def kept() -> dict[str, tuple[str, int]]:
            return {t: v for t, v in _spans_and_spend(home)[0].items() if t in traces}

        assert wait_for(lambda: len(kept()) == len(traces), timeout=10), kept()
        log = server.log_text()
    assert {status for status, _ in kept().values()} == {"error"}
    assert "Traceback" not in log, log[-3000:]
