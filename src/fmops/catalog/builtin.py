"""Models every project has without configuring anything: the embedded defaults, when installed."""

from __future__ import annotations

from fmops.catalog.entry import ModelEntry
from fmops.providers.generation import recommended

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
# SmolLM2's model card recommends temperature 0.2 and top_p 0.9. Without them the 135M model
# repeats itself until max_tokens (2,000 tokens in 33 s for "Say hello in French."); even with
# them it loops about one answer in three (2 of 6 ran to the 512-token cap here), which
# llama.cpp's long-time default repeat penalty of 1.1 ends (0 of 8, at most 110 tokens). Its GGUF
# carries no `general.sampling.*` metadata: tests/catalog/test_generation.py checks the packaged
# file, so a package that adds some is noticed (reading it here would load llama.cpp in every
# process that lists models).
SMOLLM2_GENERATION = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1}


def builtin_models() -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    try:
        from fmops.providers.llamacpp import default_chat_model_path

        gguf = default_chat_model_path()
    except ImportError:
        gguf = None
    if gguf is not None:
        entries.append(
            ModelEntry(
                alias=DEFAULT_CHAT_MODEL,
                provider="llamacpp",
                provider_model=str(gguf),
                context_window=8192,
                capabilities={"streaming": True, "json_schema": True, "tools": False},
                timeout_seconds=300.0,
                max_retries=0,
                license="apache-2.0",
                options={"n_ctx": 2048, **recommended({}, SMOLLM2_GENERATION)},
            )
        )
    try:
        from fmops.providers.embeddings import default_embedding_model_path

        minilm = default_embedding_model_path()
    except ImportError:
        minilm = None
    if minilm is not None:
        entries.append(
            ModelEntry(
                alias=DEFAULT_EMBEDDING_MODEL,
                provider="local-embeddings",
                provider_model=str(minilm),
                context_window=256,
                capabilities={"chat": False, "streaming": False, "embeddings": True},
                timeout_seconds=120.0,
                max_retries=0,
                license="apache-2.0",
            )
        )
    return entries
