"""The transformers provider on a tiny, randomly initialised Llama built here (saved as safetensors
with a byte-level BPE tokenizer and a ChatML template): greedy and seeded answers with usage,
streaming, stop strings, cancellation of closed streams, PEFT LoRA adapters, and refusal of pickles."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.chat_format import CHATML_TEMPLATE
from fmops.providers.transformers import TransformersProvider

JSON = dict[str, Any]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Hello, how are you today?",
    "I like tea and small language models.",
]
HELLO = [{"role": "user", "content": "Hello, how are you?"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, LoRA adapter folder): a 2-layer Llama with hidden size 32, and a LoRA on it."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()

    adapter = tmp_path_factory.mktemp("tiny-lora")
    torch.manual_seed(1)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(LlamaForCausalLM.from_pretrained(folder), lora).save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").is_file()
    return folder, adapter


@pytest.fixture(scope="module")
def base(tiny: tuple[Path, Path]) -> Iterator[TransformersProvider]:
    provider = TransformersProvider(ProviderConfig(model=str(tiny[0]), options={"device": "cpu"}))
    yield provider
    asyncio.run(provider.close())


def greedy(max_tokens: int = 12, **extra: Any) -> JSON:
    return {"model": "tiny", "messages": HELLO, "max_tokens": max_tokens, "temperature": 0, **extra}


def text_of(response: JSON) -> str:
    return str(response["choices"][0]["message"]["content"])


async def collect(provider: TransformersProvider, body: JSON) -> list[JSON]:
    return [chunk async for chunk in provider.chat_stream(body, timeout=60)]


def test_chat_renders_the_template_and_counts_tokens(
    base: TransformersProvider, tiny: tuple[Path, Path]
) -> None:
    response = asyncio.run(base.chat(greedy(), timeout=60))
    assert response["object"] == "chat.completion"
    assert response["model"] == "tiny"
    assert text_of(response)
    tokenizer = AutoTokenizer.from_pretrained(tiny[0])
    prompt = tokenizer.apply_chat_template(HELLO, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    expected_prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    usage = response["usage"]
    assert usage["prompt_tokens"] == expected_prompt_tokens
    assert usage["completion_tokens"] == 12
    assert response["choices"][0]["finish_reason"] == "length"
    assert usage["total_tokens"] == expected_prompt_tokens + 12


def test_stream_joins_into_the_greedy_answer(base: TransformersProvider) -> None:
    response = asyncio.run(base.chat(greedy(), timeout=60))
    chunks = asyncio.run(collect(base, greedy()))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) >= 4
    assert "".join(pieces) == text_of(response)
    assert chunks[-1]["usage"] == response["usage"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_seeded_sampling_repeats(base: TransformersProvider) -> None:
    body = {"messages": HELLO, "max_tokens": 10, "temperature": 1.0, "seed": 5}
    first, second = (text_of(asyncio.run(base.chat(body, timeout=60))) for _ in range(2))
    assert first == second


def test_stop_string_cuts_the_answer(base: TransformersProvider) -> None:
    full = text_of(asyncio.run(base.chat(greedy(20), timeout=60)))
    stop = full[4:6]
    expected = full[: full.index(stop)]
    response = asyncio.run(base.chat(greedy(20, stop=[stop]), timeout=60))
    assert text_of(response) == expected
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["completion_tokens"] < 20  # generation itself stopped early


def test_closing_a_stream_stops_generation(base: TransformersProvider) -> None:
    async def scenario() -> float:
        stream = base.chat_stream(greedy(5000), timeout=60)
        seen = 0
        async for chunk in stream:
            seen += bool(chunk["choices"][0]["delta"].get("content"))
            if seen == 3:
                break
        assert base.engine.busy
        await stream.aclose()
        started = time.perf_counter()
        while base.engine.busy and time.perf_counter() - started < 30:
            await asyncio.sleep(0.01)
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 2.0  # 5000 tokens would take minutes


def test_lora_adapter_changes_the_model(base: TransformersProvider, tiny: tuple[Path, Path]) -> None:
    tuned = TransformersProvider(ProviderConfig(model=str(tiny[0]), options={"adapter": str(tiny[1])}))
    try:
        assert tuned.engine is not base.engine

        def logits(loaded: Any, _: Any) -> torch.Tensor:
            ids = loaded.tokenizer("Paris is the capital", return_tensors="pt")["input_ids"]
            return loaded.model(ids).logits

        base_logits = asyncio.run(base.engine.call(logits, timeout=60))
        tuned_logits = asyncio.run(tuned.engine.call(logits, timeout=60))
        assert (base_logits - tuned_logits).abs().max() > 1e-3
        assert text_of(asyncio.run(tuned.chat(greedy(), timeout=60))) != text_of(
            asyncio.run(base.chat(greedy(), timeout=60))
        )
    finally:
        asyncio.run(tuned.close())


def test_pickled_adapter_is_refused(
    tiny: tuple[Path, Path], tmp_path: Path, pickled_weights: tuple[bytes, Path]
) -> None:
    payload, marker = pickled_weights
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shutil.copy(tiny[1] / "adapter_config.json", adapter)
    (adapter / "adapter_model.bin").write_bytes(payload)
    provider = TransformersProvider(ProviderConfig(model=str(tiny[0]), options={"adapter": str(adapter)}))
    try:
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.chat(greedy(), timeout=60))
        assert "safetensors" in caught.value.message
        assert "pickle" in caught.value.message
        assert not marker.exists()
    finally:
        asyncio.run(provider.close())


def test_pickled_model_weights_are_refused(
    tiny: tuple[Path, Path], tmp_path: Path, pickled_weights: tuple[bytes, Path]
) -> None:
    payload, marker = pickled_weights
    folder = tmp_path / "pickled-model"
    shutil.copytree(tiny[0], folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(payload)
    provider = TransformersProvider(ProviderConfig(model=str(folder)))
    try:
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.chat(greedy(), timeout=60))
        assert "cannot load the model" in caught.value.message
        assert not marker.exists()
    finally:
        asyncio.run(provider.close())


def test_json_output_is_refused_with_a_pointer(base: TransformersProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(base.chat(greedy(response_format={"type": "json_object"}), timeout=60))
    assert caught.value.status == 400
    assert "llamacpp" in caught.value.message
    assert not TransformersProvider.capabilities.json_schema
    assert TransformersProvider.capabilities.local
