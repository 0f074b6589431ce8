"""The bare floor of an OpenAI-compatible gateway, for gateway_vs_litellm.py to measure beside fmops.

Starlette on uvicorn (httptools, uvloop, one process), a static bearer key, one pooled aiohttp session to
the upstream, and a row per call written to SQLite in batches (every 50 ms, on a thread): what any
Python gateway pays before auth, limits, budgets, cost, guardrails, endpoints and full tracing. Issue 21
asks fmops to be measured against it. Not part of fmops.

    .venv/bin/python benchmarks/floor_gateway.py --port 8400 --upstream http://127.0.0.1:9000/v1 \
        --key sk-floor --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def build(upstream: str, key: str, db_path: str) -> Starlette:
    rows: list[tuple[str, str, float, int]] = []
    state: dict[str, Any] = {}
    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, model TEXT, ms REAL, status INTEGER)")

    def write(batch: list[tuple[str, str, float, int]]) -> None:
        db.execute("BEGIN")
        db.executemany("INSERT INTO calls VALUES (?, ?, ?, ?)", batch)
        db.execute("COMMIT")

    async def flush_loop() -> None:
        while True:
            await asyncio.sleep(0.05)
            if rows:
                batch = rows[:]
                del rows[:]
                await asyncio.to_thread(write, batch)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        task = asyncio.create_task(flush_loop())
        yield
        task.cancel()
        await state["http"].close()
        if rows:
            write(rows[:])

    async def chat(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {key}":
            return Response(
                b'{"error": {"message": "bad key"}}', status_code=401, media_type="application/json"
            )
        body = orjson.loads(await request.body())
        started = time.perf_counter()
        http: aiohttp.ClientSession = state["http"]
        url = f"{upstream}/chat/completions"
        if not body.get("stream"):
            async with http.post(url, data=orjson.dumps(body)) as answer:
                data = await answer.read()
                status = answer.status
            rows.append(
                (uuid.uuid4().hex, str(body.get("model")), (time.perf_counter() - started) * 1e3, status)
            )
            return Response(data, status_code=status, media_type="application/json")

        async def relay() -> AsyncIterator[bytes]:
            async with http.post(url, data=orjson.dumps(body)) as answer:
                async for chunk in answer.content.iter_any():
                    yield chunk
            rows.append(
                (uuid.uuid4().hex, str(body.get("model")), (time.perf_counter() - started) * 1e3, 200)
            )

        return StreamingResponse(relay(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL (…/v1)")
    parser.add_argument("--key", required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    app = build(args.upstream.rstrip("/"), args.key, args.db)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
