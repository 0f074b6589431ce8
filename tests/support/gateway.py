"""Helpers for gateway tests: models added with the real CLI, the official SDK as client, spans read back."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import openai
import orjson

from support.server import FMOPS, RunningServer, start_server

# Each gateway test module starts one server: no job workers (faster start and stop), catalog changes
# visible at once.
GATEWAY_ENV = {"FMOPS_MODEL_CACHE_SECONDS": "0", "FMOPS_WORKERS": "0"}


@contextmanager
def gateway_server(home: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    with start_server(home, {**GATEWAY_ENV, **(extra_env or {})}) as running:
        yield running


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env["FMOPS_HOME"] = str(home)
    return env


def fmops(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `fmops` CLI against the server's home (same SQLite database)."""
    return subprocess.run(
        [str(FMOPS), *args], env=cli_env(home), capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def cli_in_process(home: Path) -> Iterator[None]:
    """Run CLI commands in this process as `fmops` would on `home`: the environment holds no FMOPS_*
    setting but FMOPS_HOME, and no settings or platform cached by an earlier command carry over."""
    from fmops.cli.common import local_platform, settings

    saved = {k: v for k, v in os.environ.items() if k.startswith("FMOPS_")}
    for name in saved:
        del os.environ[name]
    os.environ["FMOPS_HOME"] = str(home)
    settings.cache_clear()
    local_platform.cache_clear()
    try:
        yield
    finally:
        if local_platform.cache_info().currsize:
            local_platform().store.dispose()
        settings.cache_clear()
        local_platform.cache_clear()
        os.environ.pop("FMOPS_HOME", None)
        os.environ.update(saved)


def add_models(home: Path, models: Mapping[str, Sequence[str]]) -> None:
    """`fmops models add ALIAS ARGS…` for each model, in order (fallbacks first), on the server's home.

    The real command, run in this process: a new process would spend about a second starting the CLI,
    and most test modules add their models this way."""
    from fmops.cli import app

    out = io.StringIO()
    with cli_in_process(home), redirect_stdout(out), redirect_stderr(out):
        for alias, args in models.items():
            app(["models", "add", alias, *args], standalone_mode=False)
    assert out.getvalue().count("added ") == len(models), out.getvalue()


def openai_model(upstream: str, base_url: str, *extra: str, api_key: str | None = None) -> list[str]:
    """CLI arguments for an `openai`-provider model served by the mock upstream."""
    args = ["--provider", "openai", "--model", upstream, "--base-url", base_url, *extra]
    if api_key:
        args += ["--api-key", api_key]
    return args


def sdk(server: RunningServer, key: str | None = None, **kwargs: Any) -> openai.OpenAI:
    """The official SDK pointed at fmops; no client-side retries, so every retry seen is the gateway's."""
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 30)
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or server.admin_key, **kwargs)


def async_sdk(server: RunningServer, key: str | None = None, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 30)
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key or server.admin_key, **kwargs)


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    span = dict(row)
    for column in ("input", "output", "attributes"):
        if isinstance(span.get(column), str | bytes):
            span[column] = orjson.loads(span[column])
    return span


def read_span(server: RunningServer, trace_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The span of one gateway call, read from the server's SQLite database once the writer flushed it."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(server.home / "fmops.db", timeout=5) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM spans WHERE trace_id = ?", (trace_id,)).fetchone()
        if row is not None:
            return _decode(row)
        if time.monotonic() > deadline:
            raise AssertionError(f"no span for trace {trace_id} after {timeout}s")
        time.sleep(0.05)


def spans_of_model(server: RunningServer, model: str) -> list[dict[str, Any]]:
    """Every span recorded for calls that asked for `model`, oldest first."""
    with sqlite3.connect(server.home / "fmops.db", timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM spans WHERE model = ? ORDER BY start_time", (model,)).fetchall()
    return [_decode(row) for row in rows]


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
