"""Reading a call's trace back in tests: the gateway writes spans in batches (buffered tracing, the
default), so a trace is stored a moment after the answer is sent, not before. Poll for it."""

from __future__ import annotations

import time
from typing import Any

import httpx


def stored_trace(client: httpx.Client, trace_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET /api/traces/{trace_id} once it is stored (a 404 until the writer's next flush)."""
    deadline = time.monotonic() + timeout
    while (found := client.get(f"/api/traces/{trace_id}")).status_code == 404:
        assert time.monotonic() < deadline, f"trace {trace_id} was never stored"
        time.sleep(0.05)
    assert found.status_code == 200, found.text
    trace: dict[str, Any] = found.json()
    return trace
