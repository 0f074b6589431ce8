"""A vLLM-shaped mock OpenAI server: the routes, answers and errors of `vllm serve` that fmops uses.

- GET /health: 200 once started; GET /v1/models: the served model and each loaded adapter
  (`owned_by: vllm`, an adapter's `parent` is the base), as vLLM lists them;
- POST /v1/load_lora_adapter {lora_name, lora_path}: 200 with a plain-text success line; 400 if the
  name is loaded already; 404 if the folder has no adapter_config.json (vLLM's "No adapter found");
  the route exists only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora, as in vLLM;
- POST /v1/unload_lora_adapter {lora_name}: 200, or 404 for a name not loaded;
- POST /v1/chat/completions: the base or a loaded adapter by name (else vLLM's 404 "The model `x`
  does not exist."); the reply names the model that answered, streamed as SSE word by word with a
  role chunk first and a usage chunk when stream_options.include_usage asks, then [DONE].
- Test controls: GET /_control/state (args, pid, loaded adapters, every load/unload/call in order),
  POST /_control/crash (the process exits at once, as a crashed server would).

Run as the "vllm" executable: `python tests/support/mock_vllm.py serve MODEL --port P …` takes the
arguments fmops passes to `vllm serve`; in-process, `run_mock_vllm()` serves it from a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web


@dataclass
class VLLMState:
    model: str
    args: dict[str, Any] = field(default_factory=dict)
    runtime_lora: bool = True
    adapters: dict[str, str] = field(default_factory=dict)  # name -> path
    events: list[list[str]] = field(
        default_factory=list
    )  # ["load", name] / ["unload", name] / ["chat", model]
    chunk_delay: float = 0.0


def _error(status: int, message: str, kind: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


def build_app(state: VLLMState) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(request: web.Request) -> web.Response:
        now = int(time.time())
        cards = [
            {"id": state.model, "object": "model", "created": now, "owned_by": "vllm", "root": state.model}
        ]
        cards += [
            {"id": n, "object": "model", "created": now, "owned_by": "vllm", "root": p, "parent": state.model}
            for n, p in state.adapters.items()
        ]
        return web.json_response({"object": "list", "data": cards})

    async def load(request: web.Request) -> web.Response:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in state.adapters:
            return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if not (Path(path) / "adapter_config.json").is_file():
            return _error(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        state.adapters[name] = path
        state.events.append(["load", name])
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(request: web.Request) -> web.Response:
        name = (await request.json()).get("lora_name")
        if name not in state.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del state.adapters[name]
        state.events.append(["unload", name])
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model")
        if model != state.model and model not in state.adapters:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        state.events.append(["chat", model])
        words = f"Hello from {model} on vLLM.".split()
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}
        usage["total_tokens"] = prompt_tokens + len(words)
        base = {"id": "chatcmpl-vllm-mock", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

        await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            await send([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
            await asyncio.sleep(state.chunk_delay)
        await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], usage=usage)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def control_state(request: web.Request) -> web.Response:
        snapshot = {
            "args": state.args,
            "pid": os.getpid(),
            "adapters": state.adapters,
            "events": state.events,
        }
        return web.json_response(snapshot)

    async def crash(request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_later(0.05, os._exit, 1)
        return web.Response(text="crashing")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    if state.runtime_lora:
        app.router.add_post("/v1/load_lora_adapter", load)
        app.router.add_post("/v1/unload_lora_adapter", unload)
    app.router.add_get("/_control/state", control_state)
    app.router.add_post("/_control/crash", crash)
    return app


@contextmanager
def run_mock_vllm(model: str = "HuggingFaceTB/SmolLM2-135M-Instruct") -> Iterator[tuple[str, VLLMState]]:
    """The mock in a thread of this process: yields its base URL (…/v1) and its state."""
    from support.threaded_app import serve_in_thread

    state = VLLMState(model=model)
    with serve_in_thread(build_app(state)) as port:
        yield f"http://127.0.0.1:{port}/v1", state


def main(argv: list[str]) -> None:
    """`serve MODEL` and the `vllm serve` arguments fmops passes (unknown ones are ignored)."""
    parser = argparse.ArgumentParser(prog="mock-vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--max-loras", type=int, default=1)
    parser.add_argument("--max-lora-rank", type=int, default=16)
    parser.add_argument("--lora-modules", nargs="*", default=[])
    args, unknown = parser.parse_known_args(argv)
    runtime = args.enable_lora and os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in (
        "1",
        "true",
    )
    state = VLLMState(model=args.model, args={**vars(args), "unknown": unknown}, runtime_lora=runtime)
    for module in args.lora_modules:
        name, _, path = module.partition("=")
        state.adapters[name] = path
    print(f"mock vLLM serving {args.model} on {args.host}:{args.port}", flush=True)
    web.run_app(build_app(state), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
