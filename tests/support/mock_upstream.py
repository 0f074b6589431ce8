"""A fault-injecting, OpenAI-compatible mock upstream for tests and benchmarks.

Behaviour per request, in priority order:
1. a scripted step queued with `POST /_control/script` (FIFO, one per request), e.g.
   {"status": 429, "retry_after": 1}, {"status": 503}, {"hang": 30}, {"delay": 0.2},
   {"garbage": true}, {"truncate_after": 2}, {"bad_bytes_after": 1} (an event that is not UTF-8),
   {"chunk_delay": 0.2} (seconds between streamed words), {"reply": "text"},
   {"drop": true} (close the socket);
2. the requested model name: "always-500", "always-429", "always-400", "hang", "slow-<ms>",
   "garbage", "truncate", "retry-after-<s>" (429 with that Retry-After), "stall-<n>" (stream n words,
   then hang with the socket open), "drip-<ms>" (200 words streamed, one per <ms>); embeddings
   know "slow-<ms>" only;
   a model named in `MockState.down` answers 503 until it is taken out again (an outage and recovery);
3. otherwise a fixed reply ("Hello from the mock upstream.") streamed as one chunk per word.

Every request is recorded (path, headers, JSON body): `GET /_control/requests`; `POST /_control/reset`.
Run standalone for benchmarks: `python tests/support/mock_upstream.py --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from support.threaded_app import serve_in_thread

REPLY = "Hello from the mock upstream."


@dataclass
class MockState:
    script: deque[dict[str, Any]] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    record: bool = True
    # Cancellation evidence: streams whose client went away before the end.
    aborted_streams: int = 0
    open_streams: int = 0  # streams being sent now: a gateway that leaks them keeps this up
    down: set[str] = field(default_factory=set)  # models answering 503 for now


def _completion(model: str, text: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        },
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


DRIP_WORDS = 200


def _step_for(state: MockState, model: str) -> dict[str, Any]:
    if state.script:
        return state.script.popleft()
    if model in state.down:
        return {"status": 503}
    if model.startswith("retry-after-"):
        return {"status": 429, "retry_after": model.removeprefix("retry-after-")}
    if model.startswith("stall-"):
        return {"stall_after": int(model.removeprefix("stall-"))}
    if model.startswith("drip-"):
        words = " ".join(f"w{i}" for i in range(DRIP_WORDS))
        return {"chunk_delay": int(model.removeprefix("drip-")) / 1000, "reply": words}
    if model == "always-500":
        return {"status": 500}
    if model == "always-429":
        return {"status": 429, "retry_after": 0}
    if model == "always-400":
        return {"status": 400}
    if model == "hang":
        return {"hang": 3600}
    if model.startswith("slow-"):
        return {"delay": int(model.removeprefix("slow-")) / 1000}
    if model == "garbage":
        return {"garbage": True}
    if model == "truncate":
        return {"truncate_after": 2}
    return {}


async def _until_closed(request: web.Request, limit: float = 3600) -> None:
    """Hold a stream open without sending, until the client closes it (then it counts as aborted)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client closed a stalled stream")
        await asyncio.sleep(0.05)


def make_app(state: MockState) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if state.record:
            state.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        model = str(body.get("model", ""))
        step = _step_for(state, model)
        if "delay" in step:
            await asyncio.sleep(step["delay"])
        if "hang" in step or ("stall_after" in step and not body.get("stream")):
            await asyncio.sleep(step.get("hang", 3600))
        if step.get("drop"):
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        status = step.get("status")
        if status:
            headers = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else {}
            err = {"error": {"message": f"mock upstream error {status}", "type": "mock", "code": None}}
            return web.Response(
                status=status, body=orjson.dumps(err), headers=headers, content_type="application/json"
            )
        if step.get("garbage"):
            return web.Response(status=200, text="<html>not json", content_type="application/json")
        text = step.get("reply", REPLY)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(_completion(model, text, prompt_tokens)), content_type="application/json"
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = text.split(" ")
        chunk_delay = float(step.get("chunk_delay", 0))
        state.open_streams += 1
        try:
            await resp.write(_chunk(model, {"role": "assistant", "content": ""}))
            for i, word in enumerate(words):
                if "bad_bytes_after" in step and i >= step["bad_bytes_after"]:
                    await resp.write(b"data: \xff\xfe not utf-8\n\n")  # a corrupt event mid-stream
                    return resp
                if "truncate_after" in step and i >= step["truncate_after"]:
                    assert request.transport is not None
                    request.transport.close()  # the stream breaks mid-way
                    return resp
                if "stall_after" in step and i >= step["stall_after"]:
                    await _until_closed(request)  # the upstream stops sending but keeps the socket
                await resp.write(_chunk(model, {"content": word if i == 0 else " " + word}))
                if chunk_delay:
                    await asyncio.sleep(chunk_delay)
            await resp.write(_chunk(model, {}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = _completion(model, text, prompt_tokens)["usage"]
                payload = {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                await resp.write(b"data: " + orjson.dumps(payload) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            state.aborted_streams += 1
            raise
        finally:
            state.open_streams -= 1
        return resp

    async def embeddings(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if state.record:
            state.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if str(body.get("model", "")).startswith("slow-"):  # "slow-<ms>", as for chat
            await asyncio.sleep(int(str(body["model"]).removeprefix("slow-")) / 1000)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 1.0]}
            for i, t in enumerate(inputs)
        ]
        usage = {"prompt_tokens": sum(len(str(t).split()) for t in inputs), "total_tokens": 0}
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data, "model": body["model"], "usage": usage}),
            content_type="application/json",
        )

    async def script(request: web.Request) -> web.Response:
        steps = orjson.loads(await request.read())
        state.script.extend(steps if isinstance(steps, list) else [steps])
        return web.json_response({"queued": len(state.script)})

    async def requests(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(state.requests), content_type="application/json")

    async def reset(_: web.Request) -> web.Response:
        state.script.clear()
        state.requests.clear()
        state.aborted_streams = 0
        state.down.clear()
        return web.json_response({"ok": True})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "aborted_streams": state.aborted_streams,
                "open_streams": state.open_streams,
                "requests": len(state.requests),
            }
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/_control/script", script)
    app.router.add_get("/_control/requests", requests)
    app.router.add_post("/_control/reset", reset)
    app.router.add_get("/_control/stats", stats)
    return app


@dataclass
class MockUpstream:
    url: str  # base URL including /v1
    state: MockState

    def script(self, *steps: dict[str, Any]) -> None:
        self.state.script.extend(steps)

    def reset(self) -> None:
        self.state.script.clear()
        self.state.requests.clear()
        self.state.aborted_streams = 0
        self.state.down.clear()


@contextmanager
def run_mock_upstream(port: int = 0) -> Iterator[MockUpstream]:
    """Serve the mock on 127.0.0.1 in a background thread for the duration of the block."""
    state = MockState()
    with serve_in_thread(make_app(state), port) as bound:
        yield MockUpstream(url=f"http://127.0.0.1:{bound}/v1", state=state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    state = MockState(record=False)
    web.run_app(make_app(state), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
