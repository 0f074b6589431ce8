"""A hostile OpenAI-compatible upstream for the security suite, and a recorder that must stay silent.

The upstream behaves by the requested model name:
- "echo-401" / "echo-400" / "echo-500": the error body repeats the Authorization header it was sent
  (OpenAI itself echoes part of a wrong key in its 401s);
- "echo-stream": a stream whose second event is an error event repeating the key;
- "echo-garbage": a 200 whose non-JSON body repeats the key;
- "hang": never answers (the model's timeout must fire);
- "redirect": a 307 to the recorder's URL (an internal service an attacker would like to reach);
- anything else: a normal completion.

Every request is recorded; the recorder records every request it ever gets (none is the pass).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from support.threaded_app import serve_in_thread


@dataclass
class Hostile:
    url: str = ""  # base URL including /v1
    recorder_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # requests that reached the recorder


def _key_of(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-hostile",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _app(state: Hostile) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        state.requests.append({"headers": dict(request.headers), "body": body})
        model, key = str(body.get("model")), _key_of(request)
        echoed = f"Incorrect API key provided: {key}. Check the key you configured."
        if model in ("echo-401", "echo-400", "echo-500"):
            status = int(model.removeprefix("echo-"))
            err = {"error": {"message": echoed, "type": "invalid_request_error", "code": "invalid_api_key"}}
            return web.json_response(err, status=status)
        if model == "echo-garbage":
            return web.Response(status=200, text=f"<html>{echoed}</html>", content_type="application/json")
        if model == "hang":
            await asyncio.sleep(60)
        if model == "redirect":
            raise web.HTTPTemporaryRedirect(state.recorder_url)
        if model == "echo-stream":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model}
            first = {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}
            await resp.write(b"data: " + orjson.dumps(first) + b"\n\n")
            await resp.write(b"data: " + orjson.dumps({"error": {"message": echoed}}) + b"\n\n")
            return resp
        return web.json_response(_completion(model))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def _recorder(state: Hostile) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        state.recorded.append(f"{request.method} {request.path_qs} {dict(request.headers)}")
        return web.json_response({"Code": "Success", "SecretAccessKey": "from-the-metadata-service"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


@contextmanager
def run_hostile() -> Iterator[Hostile]:
    state = Hostile()
    with serve_in_thread(_recorder(state)) as recorder_port, serve_in_thread(_app(state)) as port:
        state.url = f"http://127.0.0.1:{port}/v1"
        state.recorder_url = f"http://127.0.0.1:{recorder_port}/latest/meta-data/iam/security-credentials/"
        yield state
