"""A fine-tune served at the base model's speed: the base GGUF with the LoRA merged into its weights.

llama.cpp applies a GGUF LoRA as two extra small matmuls per adapted weight and token; on the
default 135M model, with every linear layer adapted, that cost a quarter of decode speed
(benchmarks/finetune_vs_trl.py). Merging removes it: the served file has the base's tensors, with
each adapted weight replaced by dequantize(base) + B @ A.

Adapted weights are stored as Q8_0 by default, whatever the base's type: a merged weight
re-quantized to a 4-bit type would round away much of a small LoRA delta (a Q4 step is ~1/15 of
a block's range), while Q8_0 keeps it (~1/254) and decodes as fast on CPU. Every other tensor is
copied byte for byte, with all of the base's metadata (tokenizer, chat template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fmops.errors import UserError
from fmops.finetune.gguf_lora import adapter_factors, gguf_file

__all__ = ["MERGED_TYPES", "merge_into_gguf"]

MERGED_TYPES = ("q8_0", "f16", "f32", "base")
# Written by GGUFWriter itself (or describing the file, not the model): never copied.
_SKIPPED_KEYS = frozenset({"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture"})


def _copy_metadata(reader: Any, writer: Any) -> None:
    import gguf

    for key, field in reader.fields.items():
        if key in _SKIPPED_KEYS:
            continue
        value_type = field.types[0]
        if value_type == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), value_type, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), value_type)


def _merged_type(name: str, base_type: Any) -> Any:
    import gguf

    if name == "base":
        return base_type
    return gguf.GGMLQuantizationType[name.upper()]


def merge_into_gguf(adapter_dir: Path, base_gguf: Path, out: Path, *, weight_type: str = "q8_0") -> Path:
    """Write `out`: `base_gguf` with the PEFT adapter in `adapter_dir` merged into its weights."""
    import gguf

    if weight_type not in MERGED_TYPES:
        raise UserError(f"weight_type must be one of {', '.join(MERGED_TYPES)}", param="weight_type")
    arch, factors = adapter_factors(adapter_dir, base_gguf)
    deltas = {name: (a, b) for name, a, b in factors}
    reader = gguf.GGUFReader(str(base_gguf))
    out.parent.mkdir(parents=True, exist_ok=True)
    with gguf_file(out, arch) as writer:
        _copy_metadata(reader, writer)
        for tensor in reader.tensors:
            if tensor.name not in deltas:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
                continue
            a, b = deltas.pop(tensor.name)
            # A plain array, not the memmap: numpy slices a memmap row group by row group, slowly.
            raw = np.array(tensor.data)
            weights = gguf.quants.dequantize(raw, tensor.tensor_type).astype(np.float32)
            if weights.shape != (b.shape[0], a.shape[1]):
                raise UserError(
                    f"the adapter's {tensor.name} is {b.shape[0]}x{a.shape[1]}, the base's weight"
                    f" {weights.shape[0]}x{weights.shape[1]}: it was trained on another model"
                )
            weights += b @ a
            qtype = _merged_type(weight_type, tensor.tensor_type)
            if weights.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
                qtype = gguf.GGMLQuantizationType.F16  # rows that do not fill whole blocks
            writer.add_tensor(tensor.name, gguf.quants.quantize(weights, qtype), raw_dtype=qtype)
    return out
