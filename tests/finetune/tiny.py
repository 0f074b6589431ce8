"""A tiny random Llama model and tokenizer built in the test, and small chat data (no hub downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 64) with a character-level WordLevel tokenizer, saved as safetensors."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=vocab["<|im_start|>"],
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


CATEGORIES = ["billing", "technical", "account", "shipping", "other"]
WORDS = {
    "billing": ["refund", "invoice", "charged twice", "payment"],
    "technical": ["crash", "error 500", "app freezes", "bug"],
    "account": ["password", "login", "2fa code", "username"],
    "shipping": ["parcel", "tracking", "delivery late", "courier"],
    "other": ["feedback", "hello", "question", "idea"],
}


def chat_records(n: int, *, seed: int = 0, validation: int = 0) -> list[dict[str, Any]]:
    """Short triage chats: the answer is a JSON label the ticket's keyword decides."""
    rng = random.Random(seed)
    out = []
    for i in range(n + validation):
        category = rng.choice(CATEGORIES)
        ticket = f"{rng.choice(WORDS[category])} #{rng.randrange(100)}"
        out.append(
            {
                "messages": [
                    {"role": "user", "content": ticket},
                    {"role": "assistant", "content": json.dumps({"category": category})},
                ],
                "metadata": {"split": "validation"} if i >= n else {},
            }
        )
    return out
