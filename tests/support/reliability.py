"""Helpers for the reliability suite (tests/reliability/): models added over HTTP, load, SSE outcomes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from support.gateway import GATEWAY_ENV
from support.server import RunningServer

# Models are added through the API (no CLI start per model); the mock upstream is on loopback.
RELIABILITY_ENV = {**GATEWAY_ENV, "FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
MESSAGES = [{"role": "user", "content": "hello there"}]

# FMOPS_TEST_LONG=1: the long variants (a 60 s outage, 1,000 disconnects, 10 kills).
LONG = os.environ.get("FMOPS_TEST_LONG") == "1"
BREAKER_THRESHOLD = 3
BREAKER_COOLDOWN = 1.5

# alias -> spec overrides (`model` is the upstream's name, which picks the mock's behaviour).
MODELS: dict[str, dict[str, Any]] = {
    # test_upstream_faults.py
    "ok": {"model": "ok-storm", "max_retries": 0},
    "slow": {"model": "slow-300", "max_retries": 0},
    "boom": {"model": "always-500", "max_retries": 1, "fallbacks": ["ok"]},
    "busy": {"model": "retry-after-1", "max_retries": 1},
    "unavailable": {"model": "down-503", "max_retries": 2},
    "hang": {"model": "hang", "max_retries": 1, "timeout_seconds": 1},
    "garbage": {"model": "garbage", "max_retries": 1},
    "trunc": {"model": "truncate", "max_retries": 0},
    "stall": {"model": "stall-2", "max_retries": 0, "timeout_seconds": 1},
    "flap": {"model": "flap-up", "max_retries": 0},
    "ratelimited": {"model": "retry-after-3600", "max_retries": 3},
    # test_disconnects.py
    "drip": {"model": "drip-20", "max_retries": 0},
    "late": {"model": "slow-2000", "max_retries": 0},
    # test_database_outage.py and test_sqlite_writers.py: priced, so every call also writes spend
    "steady": {"model": "ok-steady", "max_retries": 0, "input_price": 1.0, "output_price": 2.0},
}


def add_models(server: RunningServer, base_url: str, models: Mapping[str, Mapping[str, Any]]) -> None:
    """POST /api/models for each alias (in order: fallbacks first); `models[alias]` overrides the spec."""
    with server.client() as client:
        for alias, spec in models.items():
            body = {"alias": alias, "provider": "openai", "base_url": base_url, **spec}
            resp = client.post("/api/models", json=body)
            assert resp.status_code == 201, resp.text


def chat_body(model: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, **extra}


@dataclass
class Outcome:
    """What one caller got: the HTTP status, the answer text, or the error (body or stream event)."""

    status: int
    seconds: float
    text: str = ""
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def trace_id(self) -> str | None:
        return self.headers.get("x-fmops-trace-id")


async def call(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    """One chat call, streamed or not, read to the end; a stream's error event becomes `error`."""
    started = time.monotonic()
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        raw = await resp.aread()
    seconds = time.monotonic() - started
    headers = dict(resp.headers)
    if resp.status_code != 200:
        return Outcome(resp.status_code, seconds, error=orjson.loads(raw)["error"], headers=headers)
    if not body.get("stream"):
        message = orjson.loads(raw)["choices"][0]["message"]
        return Outcome(200, seconds, text=message["content"] or "", headers=headers)
    text, error = [], None
    for line in raw.decode().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = orjson.loads(line.removeprefix("data: "))
        if "error" in event:
            error = event["error"]
        for choice in event.get("choices") or []:
            text.append((choice.get("delta") or {}).get("content") or "")
    return Outcome(200, seconds, text="".join(text), error=error, headers=headers)


class Load:
    """Background threads calling `one(client)` in a loop until stopped; results kept in order."""

    def __init__(self, server: RunningServer, one: Callable[[httpx.Client], Any], threads: int = 4) -> None:
        self.server = server
        self.one = one
        self.results: list[Any] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.admin_key}"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=60) as client:
            while not self._stop.is_set():
                self.results.append(self.one(client))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
