"""A mock of Anthropic's Messages API (`POST /v1/messages`) for tests, served over real HTTP.

Like the real API it refuses a request without `x-api-key` (401), without `anthropic-version:
2023-06-01` or `max_tokens`, or whose roles do not alternate user/assistant (400), with
Anthropic's error body {"type": "error", "error": {"type", "message"}}.

Otherwise each request takes the next scripted step (FIFO, `mock.script(...)`), e.g.
{"reply": "text"}, {"content": [blocks], "stop_reason": "tool_use", "usage": {...}},
{"status": 429, "error_type": "rate_limit_error", "message": "…", "retry_after": 7},
{"error_after": 2, "error_type": "overloaded_error"} (a stream that fails after two deltas),
{"events": [...]} (these stream events verbatim), {"delay": s}, {"chunk_delay": s} (between
stream events), {"truncate_after": n} (close the socket after n events). With no step it answers
REPLY. An answer streams, when asked to, as the real API does: message_start, a ping, for each
content block its start, text or input-JSON deltas and stop, message_delta, message_stop.

Every request is recorded (path, headers, JSON body) in `mock.state.requests`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from support.threaded_app import serve_in_thread

REPLY = "Hello from the mock Anthropic API."
JSON = dict[str, Any]


@dataclass
class MockState:
    script: deque[JSON] = field(default_factory=deque)
    requests: list[JSON] = field(default_factory=list)
    # Cancellation evidence: streams whose client went away before the end.
    aborted_streams: int = 0


def _error(status: int, kind: str, message: str, retry_after: float | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return web.Response(
        status=status, body=orjson.dumps(body), headers=headers, content_type="application/json"
    )


def _refusal(request: web.Request, body: JSON) -> web.Response | None:
    """What the real API checks before answering."""
    if not request.headers.get("x-api-key"):
        return _error(401, "authentication_error", "x-api-key header is required")
    if request.headers.get("anthropic-version") != "2023-06-01":
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    if not isinstance(body.get("max_tokens"), int):
        return _error(400, "invalid_request_error", "max_tokens: Field required")
    roles = [m.get("role") for m in body.get("messages") or []]
    if not roles:
        return _error(400, "invalid_request_error", "messages: at least one message is required")
    if set(roles) - {"user", "assistant"} or any(a == b for a, b in itertools.pairwise(roles)):
        return _error(400, "invalid_request_error", 'messages: roles must alternate "user" and "assistant"')
    return None


def _words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(_words(b.get("text") or b.get("content")) for b in content if isinstance(b, dict))
    return 0


def _message(body: JSON, step: JSON) -> JSON:
    content = step.get("content") or [{"type": "text", "text": step.get("reply", REPLY)}]
    calls_tools = any(b["type"] == "tool_use" for b in content)
    input_tokens = _words(body.get("system")) + sum(_words(m["content"]) for m in body["messages"])
    output_tokens = sum(_words(b.get("text")) + len(orjson.dumps(b.get("input", ""))) // 4 for b in content)
    return {
        "id": "msg_mock01",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": step.get("stop_reason", "tool_use" if calls_tools else "end_turn"),
        "stop_sequence": None,
        "usage": step.get("usage", {"input_tokens": input_tokens, "output_tokens": output_tokens}),
    }


def stream_events(message: JSON) -> list[JSON]:
    """The events the real API sends for this message."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[JSON] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}}
            )
            words = block["text"].split(" ")
            for i, word in enumerate(words):
                text = word if i == 0 else " " + word
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": text},
                    }
                )
        else:
            started = {**block, "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": started})
            raw = orjson.dumps(block["input"]).decode()
            # The real API opens with an empty fragment, then cuts the JSON anywhere.
            for fragment in ["", *(raw[i : i + 7] for i in range(0, len(raw), 7))]:
                delta = {"type": "input_json_delta", "partial_json": fragment}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _fail_after(events: list[JSON], deltas: int, kind: str) -> list[JSON]:
    """The events up to the `deltas`-th content delta, then an error event in their place."""
    out: list[JSON] = []
    seen = 0
    for event in events:
        if event["type"] == "content_block_delta":
            if seen == deltas:
                break
            seen += 1
        out.append(event)
    out.append({"type": "error", "error": {"type": kind, "message": f"mock stream error: {kind}"}})
    return out


def _sse(event: JSON) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def make_app(state: MockState) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        state.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        refused = _refusal(request, body)
        if refused is not None:
            return refused
        step = state.script.popleft() if state.script else {}
        if "delay" in step:
            await asyncio.sleep(step["delay"])
        if "status" in step:
            status = step["status"]
            message = step.get("message", f"mock Anthropic error {status}")
            return _error(status, step.get("error_type", "api_error"), message, step.get("retry_after"))
        message = _message(body, step)
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(message), content_type="application/json")
        events = step.get("events") or stream_events(message)
        if "error_after" in step:
            events = _fail_after(events, step["error_after"], step.get("error_type", "overloaded_error"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk_delay = float(step.get("chunk_delay", 0))
        try:
            for i, event in enumerate(events):
                if "truncate_after" in step and i >= step["truncate_after"]:
                    assert request.transport is not None
                    request.transport.close()  # the stream breaks mid-way
                    return resp
                await resp.write(_sse(event))
                if chunk_delay:
                    await asyncio.sleep(chunk_delay)
        except (ConnectionResetError, asyncio.CancelledError):
            state.aborted_streams += 1
            raise
        return resp

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    return app


@dataclass
class MockAnthropic:
    url: str  # base URL, without /v1 (as Anthropic's own is given)
    state: MockState

    def script(self, *steps: JSON) -> None:
        self.state.script.extend(steps)

    def reset(self) -> None:
        self.state.script.clear()
        self.state.requests.clear()
        self.state.aborted_streams = 0

    @property
    def last(self) -> JSON:
        """The last request received: path, headers and JSON body."""
        return self.state.requests[-1]


@contextmanager
def run_mock_anthropic(port: int = 0) -> Iterator[MockAnthropic]:
    """Serve the mock on 127.0.0.1 in a background thread for the duration of the block."""
    state = MockState()
    with serve_in_thread(make_app(state), port) as bound:
        yield MockAnthropic(url=f"http://127.0.0.1:{bound}", state=state)
