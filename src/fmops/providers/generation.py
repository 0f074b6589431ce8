"""A local model's recommended generation settings, read from the model's own files.

Used where a request sets nothing (the local engines merge them under the request's values, see
`chat_format.parse_chat_request`), shown by `fmops models show`, and so used by the chat UI and
`fmops chat`, which send only what the person set. A GGUF file may carry them as
`general.sampling.*` metadata; a Hugging Face folder as `generation_config.json`. Without either,
the caller's fallback (a model card's recommendation) applies. A chat answer is capped at
`DEFAULT_MAX_TOKENS` unless the model or the request says otherwise, so a small model that does not
stop cannot run on for thousands of tokens.
"""

from __future__ import annotations

import ctypes
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The settings a model entry may carry as options, in the names the local engines read.
GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
DEFAULT_MAX_TOKENS = 512

_GGUF_KEYS = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repeat_penalty", float),
}
_HF_KEYS = {
    "temperature": ("temperature", float),
    "top_p": ("top_p", float),
    "top_k": ("top_k", int),
    "repetition_penalty": ("repeat_penalty", float),
    "max_new_tokens": ("max_tokens", int),
}


def generation_of(options: dict[str, Any]) -> dict[str, Any]:
    """The generation settings among a model entry's options."""
    return {k: options[k] for k in GENERATION_KEYS if k in options}


def recommended(found: dict[str, Any], fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a model entry should carry: the model's own settings over `fallback`, and a chat cap."""
    return {"max_tokens": DEFAULT_MAX_TOKENS, **(fallback or {}), **found}


@cache
def _gguf_sampling(path: str, mtime: float) -> dict[str, Any]:
    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp logs every key it reads to stderr otherwise
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # metadata and vocabulary only: ~0.1 s, no weights read
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        log.warning("could not read the metadata of %s", path)
        return {}
    found: dict[str, Any] = {}
    buffer = ctypes.create_string_buffer(256)
    try:
        for key, (name, kind) in _GGUF_KEYS.items():
            if llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer)) >= 0:
                try:
                    found[name] = kind(float(buffer.value.decode()))
                except ValueError:
                    log.warning("%s: %s is not a number: %r", path, key, buffer.value)
    finally:
        llama_cpp.llama_model_free(model)
    return found


def gguf_sampling(path: Path) -> dict[str, Any]:
    """The `general.sampling.*` settings a GGUF file carries ({} if none, or without llama.cpp)."""
    try:
        return dict(_gguf_sampling(str(path), path.stat().st_mtime))
    except (ImportError, OSError):
        return {}


def hf_generation(folder: Path) -> dict[str, Any]:
    """The settings in a Hugging Face folder's generation_config.json ({} if it has none).

    `do_sample: false` means greedy decoding, which the engines spell temperature 0.
    """
    try:
        config = json.loads((folder / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    found: dict[str, Any] = {}
    for key, (name, kind) in _HF_KEYS.items():
        value = config.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = kind(value)
    if config.get("do_sample") is False:
        found["temperature"] = 0.0
    return found


def model_generation(provider: str, model: str) -> dict[str, Any]:
    """A local model's own settings, by provider: a .gguf file's metadata or a folder's config."""
    path = Path(model).expanduser()
    if provider == "llamacpp" and path.is_file():
        return gguf_sampling(path)
    if provider == "transformers" and path.is_dir():
        return hf_generation(path)
    return {}
