"""The `transformers` provider: Hugging Face causal language models, with optional PEFT adapters.

Loads weights from safetensors (or a GGUF file through transformers' `gguf_file` support) in a
local folder or a Hub repository, applies a PEFT adapter if one is configured (how fine-tuned
models are served), renders the tokenizer's chat template and generates on one dedicated thread
per model (see `EngineThread`), on the CPU or a GPU.

Streaming pushes each new piece of text from the generation loop (a streamer) through an asyncio
queue; a closed stream raises a flag that a StoppingCriteria reads at every step. torch,
transformers and peft are imported lazily, on the engine thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmops.providers.base import JSON, Capabilities, ProviderConfig, ProviderError
from fmops.providers.chat_format import (
    CHATML_TEMPLATE,
    ChatRequest,
    Outcome,
    StopMatcher,
    parse_chat_request,
)
from fmops.providers.engine import EngineThread, require
from fmops.providers.local_chat import LocalChatProvider

__all__ = ["TransformersProvider"]

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: str
    chat_template: str
    end_tokens: frozenset[int]
    adapter: str | None


class _TextStreamer:
    """A transformers streamer that hands each new piece of decoded text to `emit`.

    The whole completion is decoded again at each token, so pieces always join into exactly the
    text a full decode gives; a piece that ends inside a multi-byte character waits for the next.
    """

    def __init__(self, tokenizer: Any, emit: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.tokens: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first pushes the prompt
            self.prompt_seen = True
            return
        self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
        self._send(final=False)

    def end(self) -> None:
        self._send(final=True)

    def _send(self, *, final: bool) -> None:
        text: str = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        piece, self.sent = text[self.sent :], len(text)
        if piece:
            self.emit(piece)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class TransformersProvider(LocalChatProvider[_Loaded]):
    """Causal LMs through Hugging Face transformers (CPU or GPU), optionally with a PEFT adapter.

    `config.model`: a local folder or a Hub id (Hub ids download unless HF_HUB_OFFLINE is set).
    `config.options`: adapter (folder of a PEFT adapter saved as safetensors), merge_adapter (true:
    fold the adapter into the weights for speed), gguf_file (load this GGUF file of the folder or
    repository instead of safetensors), device ("cpu", "cuda", …; default cuda when available),
    dtype (auto, float32, float16, bfloat16; default float32 on CPU, auto on GPU), chat_template
    (replaces the tokenizer's), local_files_only, and sampling defaults (temperature, top_p, top_k,
    min_p, repeat_penalty, max_tokens).
    """

    name = "transformers"
    capabilities = Capabilities(streaming=True, json_schema=False, tools=False, local=True)
    path_options = frozenset({"adapter", "gguf_file"})
    _SAMPLING_OPTIONS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.defaults = {k: v for k, v in config.options.items() if k in self._SAMPLING_OPTIONS}

    @property
    def engine(self) -> EngineThread[_Loaded]:
        if self._engine is None:
            folder = Path(self.config.model).expanduser()
            model = str(folder.resolve()) if folder.exists() else self.config.model
            options = tuple(
                sorted(
                    (k, repr(v)) for k, v in self.config.options.items() if k not in self._SAMPLING_OPTIONS
                )
            )
            self._key = (self.name, model, options)
            self._engine = EngineThread.acquire(self._key, f"{self.name}:{Path(model).name}", self._load)
        return self._engine

    # -- loading, on the engine thread ----------------------------------------------------------

    def _load(self) -> _Loaded:
        torch = require("torch", "torch", self.name)
        transformers = require("transformers", "transformers", self.name)
        transformers.utils.logging.disable_progress_bar()
        options = self.config.options
        folder = Path(self.config.model).expanduser()
        source = str(folder) if folder.exists() else self.config.model
        local_only = bool(options.get("local_files_only", folder.exists()))
        device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype_name = str(options.get("dtype") or ("float32" if device == "cpu" else "auto"))
        if dtype_name not in DTYPES:
            raise ProviderError(f"dtype must be one of {', '.join(DTYPES)}", status=500)
        dtype = dtype_name if dtype_name == "auto" else getattr(torch, dtype_name)
        gguf_file = options.get("gguf_file")
        # safetensors or GGUF only: a pickled checkpoint is code, and uploaded models never run code.
        weights: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {"use_safetensors": True}
        dtype_key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=local_only, **({"gguf_file": gguf_file} if gguf_file else {})
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                source, local_files_only=local_only, **{dtype_key: dtype}, **weights
            )
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot load the model {source!r}: {exc}", status=500) from exc
        adapter = options.get("adapter")
        if adapter:  # a fine-tune's adapter: on this machine, or fetched from the artifact store
            model = self._apply_adapter(model, self.local_path("adapter", str(adapter)))
        model.to(device)
        model.eval()
        template = (
            options.get("chat_template") or getattr(tokenizer, "chat_template", None) or CHATML_TEMPLATE
        )
        end_tokens = set()
        for ids in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
            if ids is not None:
                end_tokens.update(ids if isinstance(ids, list) else [ids])
        return _Loaded(
            model=model,
            tokenizer=tokenizer,
            device=device,
            chat_template=str(template),
            end_tokens=frozenset(end_tokens),
            adapter=str(adapter) if adapter else None,
        )

    def _apply_adapter(self, model: Any, adapter: Path) -> Any:
        peft = require("peft", "peft", self.name)
        if not (adapter / "adapter_config.json").is_file():
            raise ProviderError(f"no PEFT adapter in {adapter}: adapter_config.json is missing", status=500)
        if not (adapter / "adapter_model.safetensors").is_file():
            raise ProviderError(
                f"the adapter in {adapter} is not saved as safetensors (adapter_model.safetensors):"
                " fmops never loads pickled weights; re-save it with safe_serialization=True",
                status=500,
            )
        model = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        if self.config.options.get("merge_adapter", True):
            model = model.merge_and_unload()
        return model

    # -- generation, on the engine thread -------------------------------------------------------

    def _generate(
        self, loaded: _Loaded, request: ChatRequest, cancelled: threading.Event, emit: Callable[[str], None]
    ) -> Outcome:
        try:
            return self._generate_tokens(loaded, request, cancelled, emit)
        except ProviderError:
            raise
        except Exception as exc:  # an engine failure becomes an upstream error, never a crash
            raise ProviderError(f"transformers failed: {exc}", status=500) from exc

    def _generate_tokens(
        self, loaded: _Loaded, request: ChatRequest, cancelled: threading.Event, emit: Callable[[str], None]
    ) -> Outcome:
        torch = require("torch", "torch", self.name)
        transformers = require("transformers", "transformers", self.name)
        tokenizer = loaded.tokenizer
        try:
            prompt_text = tokenizer.apply_chat_template(
                request.messages,
                chat_template=loaded.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception as exc:  # a template's raise_exception or a Jinja error: the messages do not fit
            raise ProviderError(f"the chat template rejected the messages: {exc}", status=400) from exc
        inputs = tokenizer(prompt_text, add_special_tokens=False, return_tensors="pt").to(loaded.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        limit = getattr(loaded.model.config, "max_position_embeddings", None) or 1 << 30
        room = int(limit) - prompt_tokens
        if room <= 0:
            raise ProviderError(
                f"the prompt is {prompt_tokens} tokens; this model's context holds {limit}", status=400
            )
        max_tokens = min(request.max_tokens or room, room)

        stops = StopMatcher(request.stop)
        parts: list[str] = []
        stop_hit = threading.Event()

        def on_text(piece: str) -> None:
            if stop_hit.is_set():
                return
            text, stopped = stops.feed(piece)
            if text:
                parts.append(text)
                emit(text)
            if stopped:
                stop_hit.set()

        class _Halt(transformers.StoppingCriteria):  # type: ignore[misc,name-defined]
            """Ends generation when the client is gone or a stop string appeared."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                halt = cancelled.is_set() or stop_hit.is_set()
                return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any] = {"do_sample": False}
        if request.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "top_k": request.top_k,
            }
            if "min_p" in request.given:  # only when asked: transformers' default is none
                sampling["min_p"] = request.min_p
        if request.seed is not None:
            torch.manual_seed(request.seed)
        pad = (
            tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else min(loaded.end_tokens, default=0)
        )
        with torch.inference_mode():
            output = loaded.model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                repetition_penalty=request.repeat_penalty,
                pad_token_id=pad,
                stopping_criteria=transformers.StoppingCriteriaList([_Halt()]),
                streamer=_TextStreamer(tokenizer, on_text),
                **sampling,
            )
        new_tokens = [int(t) for t in output[0, prompt_tokens:].tolist()]
        ended = bool(new_tokens) and new_tokens[-1] in loaded.end_tokens
        if not stop_hit.is_set():
            tail = stops.flush()
            if tail:
                parts.append(tail)
                emit(tail)
        if cancelled.is_set():
            finish_reason = "cancelled"
        elif ended or stop_hit.is_set():
            finish_reason = "stop"
        else:
            finish_reason = "length"
        return Outcome("".join(parts), finish_reason, prompt_tokens, len(new_tokens) - int(ended))

    # -- the Provider interface -------------------------------------------------------------------

    def _request(self, body: JSON) -> ChatRequest:
        request = parse_chat_request(body, provider=self.name, defaults=self.defaults)
        if request.json_schema is not None or request.json_object:
            raise ProviderError(
                f"the {self.name} provider cannot constrain output to JSON; use a llamacpp model",
                status=400,
                body={"param": "response_format"},
            )
        return request

    def _model_name(self, request: ChatRequest) -> str:
        return request.model or self.config.model
