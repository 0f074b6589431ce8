"""A PEFT LoRA adapter as a GGUF LoRA that llama.cpp applies over the base model's GGUF.

The format, as llama.cpp's `convert_lora_to_gguf.py` writes it and `llama-adapter.cpp` reads it:
`general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, the base's
`general.architecture`, and for every adapted weight `<gguf name>.lora_a` (PEFT's lora_A, shape
rank x in) and `<gguf name>.lora_b` (lora_B, out x rank). llama.cpp scales each product by
alpha / rank, or by 1 when alpha is 0; we write alpha 0 and fold PEFT's own scaling into lora_B,
which keeps rsLoRA and per-module ranks and alphas exact.

llama.cpp stores the query and key projections of llama-family models with their rows permuted for
its rotary embedding (transformers un-permutes them when it reads a GGUF), so lora_B of q_proj and
k_proj gets the same permutation: (B permuted) @ A is the permuted delta.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmops.errors import UserError

__all__ = ["GGUF_ARCHES_PERMUTED", "adapter_factors", "adapter_to_gguf", "base_gguf_facts", "gguf_file"]

# Architectures whose q/k rows llama.cpp's converter permutes (LlamaModel.permute, undo_permute).
GGUF_ARCHES_PERMUTED = frozenset({"llama"})
_PAIR = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.default)?\.weight$")


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    if value.dtype == np.uint8:
        return bytes(value).decode("utf-8")
    return value[0].item()


def base_gguf_facts(base_gguf: Path) -> dict[str, Any]:
    """Architecture, layer and head counts of a GGUF model file (read once per file version: parsing a
    GGUF's metadata, its tokenizer above all, takes seconds)."""
    stat = base_gguf.stat()
    return dict(_gguf_facts(str(base_gguf.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _gguf_facts(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    return {
        "arch": arch,
        "block_count": _field(reader, f"{arch}.block_count"),
        "head_count": _field(reader, f"{arch}.attention.head_count"),
        "head_count_kv": _field(reader, f"{arch}.attention.head_count_kv"),
        "tensors": frozenset(t.name for t in reader.tensors),
    }


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """llama.cpp's LlamaModel.permute, on lora_B's rows (the output dimension)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _pattern_value(patterns: dict[str, Any], module: str, default: float) -> float:
    """PEFT's rank_pattern/alpha_pattern: a key matches a module name by its end, or as a regex."""
    for key, value in (patterns or {}).items():
        if module.endswith(key) or re.fullmatch(rf"(.*\.)?{key}", module):
            return float(value)
    return default


def adapter_factors(
    adapter_dir: Path, base_gguf: Path
) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The base's architecture and, per adapted GGUF weight, (name, A, B) in llama.cpp's layout.

    B carries PEFT's scaling (alpha / rank, or rsLoRA's alpha / sqrt(rank)) and, for the q/k
    projections of llama-family models, llama.cpp's row permutation: B @ A is the weight's delta as
    the GGUF stores the weight.
    """
    import gguf
    from safetensors.numpy import load_file

    config_file, weights_file = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise UserError(f"{adapter_dir} holds no PEFT adapter in safetensors", param="adapter")
    config = json.loads(config_file.read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise UserError("only plain LoRA adapters convert to GGUF (not DoRA or other PEFT types)")
    if config.get("modules_to_save"):
        raise UserError("adapters with modules_to_save (full weights) cannot be served as a GGUF LoRA")
    facts = base_gguf_facts(base_gguf)
    arch = facts["arch"]
    if arch not in gguf.MODEL_ARCH_NAMES.values():
        raise UserError(f"llama.cpp does not know the base model's architecture {arch!r}")
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, int(facts["block_count"]))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(weights_file)).items():
        match = _PAIR.match(key)
        if match is None:
            raise UserError(f"unexpected tensor {key!r} in the adapter: only lora_A/lora_B convert to GGUF")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    r, alpha = float(config["r"]), float(config["lora_alpha"])
    factors = []
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise UserError(f"the adapter's {module} lacks its lora_A or lora_B tensor")
        name = names.get_name(module)
        if name is None or f"{name}.weight" not in facts["tensors"]:
            raise UserError(f"the adapter targets {module}, which the base GGUF has no weight for")
        a, b = pair["A"].astype(np.float32), pair["B"].astype(np.float32)
        rank = a.shape[0]
        module_alpha = _pattern_value(config.get("alpha_pattern") or {}, module, alpha)
        if rank != r and not config.get("rank_pattern"):
            raise UserError(f"the adapter's {module} has rank {rank}, not the configured {int(r)}")
        scale = module_alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        b = b * np.float32(scale)
        if arch in GGUF_ARCHES_PERMUTED and module.endswith("q_proj"):
            b = _permute(b, int(facts["head_count"]), int(facts["head_count"]))
        elif arch in GGUF_ARCHES_PERMUTED and module.endswith("k_proj"):
            b = _permute(b, int(facts["head_count"]), int(facts["head_count_kv"]))
        factors.append((f"{name}.weight", np.ascontiguousarray(a), np.ascontiguousarray(b)))
    return arch, factors


@contextlib.contextmanager
def gguf_file(out: Path, arch: str) -> Iterator[Any]:
    """A GGUFWriter whose file appears at `out` only once it is whole (atomic rename): a served model
    file is never half written. What the block adds is written when it ends without an error."""
    import gguf

    writer_path = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
    writer = gguf.GGUFWriter(str(writer_path), arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(writer_path, out)
    finally:
        writer_path.unlink(missing_ok=True)


def adapter_to_gguf(adapter_dir: Path, base_gguf: Path, out: Path) -> Path:
    """Write `out` (a GGUF LoRA) from a PEFT adapter folder trained on the weights of `base_gguf`."""
    import gguf

    arch, factors = adapter_factors(adapter_dir, base_gguf)
    with gguf_file(out, arch) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 0.0)  # scaling is folded into lora_b
        for name, a, b in factors:
            writer.add_tensor(f"{name}.lora_a", a)
            writer.add_tensor(f"{name}.lora_b", b)
    return out
