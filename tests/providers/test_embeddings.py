"""The local-embeddings provider on the packaged all-MiniLM-L6-v2: real 384-dimension vectors, unit
length, meaning-aware, identical however inputs are batched, token counts, and refusal of pickles."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.embeddings import (
    LocalEmbeddingsProvider,
    default_embedding_model_path,
    sentence_transformers_settings,
)
from fmops.providers.registry import get_provider_class

SENTENCES = [
    "A cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbeddingsProvider]:
    provider = LocalEmbeddingsProvider(ProviderConfig(model="default"))
    yield provider
    asyncio.run(provider.close())


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_default_model_folder_and_its_settings() -> None:
    folder = default_embedding_model_path()
    assert folder is not None
    assert (folder / "model.safetensors").is_file()
    assert sentence_transformers_settings(folder) == ("mean", True, 256)
    assert get_provider_class("local-embeddings") is LocalEmbeddingsProvider
    caps = LocalEmbeddingsProvider.capabilities
    assert (caps.embeddings, caps.chat, caps.streaming, caps.local) == (True, False, False, True)


def test_vectors_are_384_dims_unit_length_and_meaningful(embedder: LocalEmbeddingsProvider) -> None:
    result = asyncio.run(embedder.embed(SENTENCES, timeout=120))
    vectors = result.vectors
    assert len(vectors) == len(SENTENCES)
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0, abs_tol=1e-5) for v in vectors)
    cat, kitten, markets, reset, forgot = vectors
    assert cosine(cat, kitten) > cosine(cat, markets) + 0.3
    assert cosine(reset, forgot) > max(cosine(reset, cat), cosine(reset, markets)) + 0.2


def test_token_count_is_what_the_model_read(embedder: LocalEmbeddingsProvider) -> None:
    folder = default_embedding_model_path()
    assert folder is not None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = sum(len(tokenizer(text)["input_ids"]) for text in SENTENCES)  # [CLS] … [SEP]
    assert asyncio.run(embedder.embed(SENTENCES, timeout=120)).input_tokens == expected


def test_batching_and_padding_do_not_change_vectors(embedder: LocalEmbeddingsProvider) -> None:
    together = asyncio.run(embedder.embed(SENTENCES, timeout=120)).vectors
    small_batches = LocalEmbeddingsProvider(ProviderConfig(model="default", options={"batch_size": 2}))
    try:
        one_by_one = [asyncio.run(embedder.embed([text], timeout=120)).vectors[0] for text in SENTENCES]
        paired = asyncio.run(small_batches.embed(SENTENCES, timeout=120)).vectors
    finally:
        asyncio.run(small_batches.close())
    for a, b, c in zip(together, one_by_one, paired, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5
        assert max(abs(x - y) for x, y in zip(a, c, strict=True)) < 1e-5


def test_long_inputs_are_truncated_to_the_models_limit(embedder: LocalEmbeddingsProvider) -> None:
    result = asyncio.run(embedder.embed(["word " * 1000], timeout=120))
    assert result.input_tokens == 256  # max_seq_length of all-MiniLM-L6-v2
    assert len(result.vectors[0]) == 384


def test_no_inputs_and_chat_requests(embedder: LocalEmbeddingsProvider) -> None:
    empty = asyncio.run(embedder.embed([], timeout=10))
    assert (empty.vectors, empty.input_tokens) == ([], 0)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(embedder.chat({"messages": [{"role": "user", "content": "hi"}]}, timeout=10))
    assert caught.value.status == 400
    assert "embeddings only" in caught.value.message


def test_pickled_weights_are_never_loaded(tmp_path: Path, pickled_weights: tuple[bytes, Path]) -> None:
    payload, marker = pickled_weights
    source = default_embedding_model_path()
    assert source is not None
    folder = tmp_path / "pickled-encoder"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(payload)
    provider = LocalEmbeddingsProvider(ProviderConfig(model=str(folder)))
    try:
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.embed(["hello"], timeout=60))
        assert "safetensors" in caught.value.message
        assert not marker.exists()
    finally:
        asyncio.run(provider.close())
