"""The `vllm` provider: a vLLM OpenAI server fmops attaches to or launches, with LoRA adapters
served by vLLM's multi-LoRA support (never merged).

Attach: `base_url` names a running server (`http://host:8000/v1`). Launch (`options.launch`): fmops
runs `vllm serve MODEL --tensor-parallel-size N --enable-lora --max-loras K …` itself and
supervises it (vllm_server.py): started with `fmops up` (gateway/warm.py) or on first use, restarted
after a crash, stopped with the gateway.

A fine-tuned model is the base's entry plus `options.adapter` (the PEFT adapter folder, as the vLLM
host sees it) and `options.lora_name`: before a call, the adapter is loaded into the server through
the runtime API (POST /v1/load_lora_adapter; vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, which
a managed server gets), and the request names the adapter as its `model`. fmops keeps at most
`options.max_loras` adapters loaded per server: the least recently used one not serving a request
is unloaded to make room; when all are busy the call gets a retryable 429.

Requests and streams travel exactly as for the OpenAI-compatible provider (openai.py).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar

import aiohttp
import httpx
import orjson

from fmops.errors import UserError
from fmops.providers.base import JSON, Capabilities, ProviderConfig, ProviderError
from fmops.providers.openai import OpenAIProvider, post_json
from fmops.providers.vllm_server import LaunchSpec, VLLMServer, int_option

__all__ = ["AdapterSlots", "VLLMProvider", "probe_server"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
LAUNCH_OPTIONS = frozenset(
    {
        "launch",
        "command",
        "extra_args",
        "host",
        "port",
        "tensor_parallel_size",
        "max_lora_rank",
        "log_dir",
        "startup_timeout",
        "restart_backoff",
    }
)


def _not_loaded(exc: ProviderError, name: str) -> bool:
    """vLLM's answer to a request naming an adapter it does not hold (a restarted server, or another
    gateway replica unloaded it)."""
    return exc.status == 404 and name in exc.message


class AdapterSlots:
    """The LoRA adapters fmops has loaded into one vLLM server, least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.loaded: OrderedDict[str, str] = OrderedDict()  # name -> path
        self.busy: Counter[str] = Counter()  # requests in flight per adapter
        self._lock = asyncio.Lock()

    async def acquire(
        self,
        name: str,
        path: str,
        load: Callable[[str, str], Awaitable[None]],
        unload: Callable[[str], Awaitable[None]],
    ) -> None:
        if name in self.loaded:  # no await between the check and the count: no race
            self.loaded.move_to_end(name)
            self.busy[name] += 1
            return
        async with self._lock:
            if name not in self.loaded:
                while len(self.loaded) >= self.capacity:
                    victim = next((n for n in self.loaded if self.busy[n] == 0), None)
                    if victim is None:
                        raise ProviderError(
                            f"all {self.capacity} LoRA adapter slots of this vLLM server are serving "
                            "requests; retry, or raise the model's max_loras (and vLLM's --max-loras)",
                            status=429,
                            retryable=True,
                            retry_after=1.0,
                        )
                    await unload(victim)
                    del self.loaded[victim]
                await load(name, path)
                self.loaded[name] = path
            self.loaded.move_to_end(name)
            self.busy[name] += 1

    def release(self, name: str) -> None:
        self.busy[name] -= 1
        if self.busy[name] <= 0:
            del self.busy[name]

    def forget(self, name: str | None = None) -> None:
        """The server no longer holds `name` (or any adapter: it restarted)."""
        if name is None:
            self.loaded.clear()
        else:
            self.loaded.pop(name, None)


class _Shared:
    """What every vllm model on one server shares in this process: the adapter slots and, for a
    launched server, its supervisor."""

    def __init__(self, capacity: int, server: VLLMServer | None) -> None:
        self.slots = AdapterSlots(capacity)
        self.server = server
        self.users = 0
        self.loop = asyncio.get_running_loop()


_shared: dict[str, _Shared] = {}


class VLLMProvider(OpenAIProvider):
    """Options: `launch` (bool), `tensor_parallel_size`, `max_loras` (4), `max_lora_rank` (16),
    `port` (8000), `host`, `command` (`vllm`), `extra_args`, `log_dir`, `startup_timeout` (s) for a
    launched server; `adapter` (a PEFT adapter folder) and `lora_name` for a fine-tuned model."""

    name = "vllm"
    capabilities: ClassVar[Capabilities] = Capabilities(streaming=True, tools=False, json_schema=True)
    # Options that launch a process or name a file the server reads: the operator's CLI only.
    operator_options: ClassVar[frozenset[str]] = LAUNCH_OPTIONS | {"adapter"}
    starts_with_server = True  # a launched vLLM loads for minutes: begin when fmops up starts

    def __init__(self, config: ProviderConfig) -> None:
        options = config.options
        adapter = options.get("adapter")
        self.adapter = str(adapter) if adapter else None
        default_name = "fmops-" + hashlib.sha256(str(adapter).encode()).hexdigest()[:12]
        self.lora_name = str(options.get("lora_name") or default_name) if adapter else None
        self.launch: LaunchSpec | None = None
        base_url = config.base_url or DEFAULT_BASE_URL
        if options.get("launch"):
            self.launch = LaunchSpec.from_options(config.model, options)
            base_url = self.launch.base_url
        # A fine-tune's requests name its adapter: vLLM applies the LoRA the request's `model` names.
        served = self.lora_name or config.model
        super().__init__(replace(config, model=served, base_url=base_url))
        self.max_loras = int_option(options, "max_loras", 4, 1, 1024)
        self._shared: _Shared | None = None

    @classmethod
    def check_options(cls, model: str, options: dict[str, Any]) -> None:
        """Refuse what would fail later (a TP size below 1, a bad port…), naming the option."""
        LaunchSpec.from_options(model, options)
        if "lora_name" in options and not options.get("adapter"):
            raise UserError("options.lora_name needs options.adapter", param="options.lora_name")

    # --- the server and its adapters --------------------------------------------------------------

    def _share(self) -> _Shared:
        if self._shared is None:
            found = _shared.get(self.base_url)
            if found is None or found.loop is not asyncio.get_running_loop():
                server = None
                if self.launch is not None:
                    server = VLLMServer(self.launch)
                found = _Shared(self.max_loras, server)
                if server is not None:
                    server.on_restart = found.slots.forget
                _shared[self.base_url] = found
            found.users += 1
            self._shared = found
        return self._shared

    async def _load(self, name: str, path: str) -> None:
        payload = orjson.dumps({"lora_name": name, "lora_path": path})
        try:
            await _post_text(self._client(), f"{self.base_url}/load_lora_adapter", payload)
        except ProviderError as exc:
            if exc.status == 400 and "already been loaded" in exc.message:
                return  # loaded by another gateway replica, or before this process started
            if exc.status == 404 and "load_lora_adapter" in exc.message:
                raise ProviderError(
                    "this vLLM server does not accept runtime LoRA adapters: start it with --enable-lora "
                    "and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True",
                    status=502,
                ) from None
            raise ProviderError(
                f"the vLLM server could not load LoRA adapter {name!r} from {path}: {exc.message}. The "
                "adapter folder must be readable at that path on the vLLM host",
                status=502,
                retryable=exc.retryable,
            ) from None

    async def _unload(self, name: str) -> None:
        payload = orjson.dumps({"lora_name": name})
        try:
            await _post_text(self._client(), f"{self.base_url}/unload_lora_adapter", payload)
        except ProviderError as exc:
            if exc.status != 404:  # 404: already gone
                raise

    async def _ready(self) -> _Shared:
        shared = self._share()
        if shared.server is not None:
            await shared.server.ensure_running()
        return shared

    async def _call(self, run: Callable[[], Awaitable[JSON]]) -> JSON:
        shared = await self._ready()
        if self.adapter is None or self.lora_name is None:
            return await run()
        for attempt in (0, 1):
            await shared.slots.acquire(self.lora_name, self.adapter, self._load, self._unload)
            try:
                return await run()
            except ProviderError as exc:
                if attempt or not _not_loaded(exc, self.lora_name):
                    raise
                shared.slots.forget(self.lora_name)  # load it again, once
            finally:
                shared.slots.release(self.lora_name)
        raise AssertionError("unreachable")

    # --- the provider interface ---------------------------------------------------------------------

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        return await self._call(lambda: OpenAIProvider.chat(self, body, timeout=timeout))

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        shared = await self._ready()
        if self.adapter is None or self.lora_name is None:
            async for chunk in super().chat_stream(body, timeout=timeout):
                yield chunk
            return
        for attempt in (0, 1):
            await shared.slots.acquire(self.lora_name, self.adapter, self._load, self._unload)
            sent = False
            try:
                async for chunk in super().chat_stream(body, timeout=timeout):
                    sent = True
                    yield chunk
                return
            except ProviderError as exc:
                if attempt or sent or not _not_loaded(exc, self.lora_name):
                    raise
                shared.slots.forget(self.lora_name)
            finally:
                shared.slots.release(self.lora_name)

    async def start(self) -> None:
        shared = self._share()
        if shared.server is not None:
            shared.server.launch_if_free()

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.users -= 1
            if shared.users <= 0:
                if _shared.get(self.base_url) is shared:
                    del _shared[self.base_url]
                if shared.server is not None:
                    await shared.server.stop()
        await super().close()


async def _post_text(session: aiohttp.ClientSession, url: str, payload: bytes) -> None:
    """vLLM's adapter routes answer 200 with plain text; errors as JSON, normalised by post_json."""
    try:
        await post_json(session, url, payload, 120.0)
    except ProviderError as exc:
        if exc.message != "upstream returned a body that is not JSON":
            raise


def probe_server(base_url: str, api_key: str | None = None, *, timeout: float = 10.0) -> list[str]:
    """The models a running vLLM server serves, or a UserError saying what is wrong with `base_url`
    (used when a model is added, so a typo is caught then rather than on the first call)."""
    root = base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as http:
            listing = http.get(root + "/models")
    except httpx.HTTPError as exc:
        raise UserError(
            f"cannot reach a vLLM server at {root} ({type(exc).__name__}); is `vllm serve` running there? "
            "Or let fmops launch one: --launch --model HF_ID",
            param="base_url",
        ) from None
    if listing.status_code == 401:
        raise UserError(
            f"the vLLM server at {root} refused the API key (401); pass --api-key", param="api_key"
        )
    try:
        cards = listing.json()["data"] if listing.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        cards = None
    if not isinstance(cards, list) or not all(isinstance(c, dict) for c in cards):
        raise UserError(
            f"{root} is not a vLLM OpenAI server: GET {root}/models answered {listing.status_code} "
            "without a model list; the base URL ends in /v1",
            param="base_url",
        )
    if not any(c.get("owned_by") == "vllm" for c in cards):
        raise UserError(
            f"{root} is an OpenAI-compatible server but not vLLM (its models are not owned_by vllm); "
            "add it with --provider openai",
            param="base_url",
        )
    return [str(c["id"]) for c in cards if c.get("id") and not c.get("parent")]
