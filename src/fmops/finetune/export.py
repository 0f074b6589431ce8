"""Exports of a fine-tune: the adapter (safetensors), the merged model folder, the merged GGUF, the
GGUF LoRA.

Every run writes the adapter folder and the GGUF LoRA, and the merged GGUF when it is served that
way (see job.py); the merged transformers folder is made on request, since it is a full copy of the
base's weights in fp32.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fmops.errors import UserError
from fmops.finetune.gguf_lora import adapter_to_gguf
from fmops.finetune.gguf_merge import merge_into_gguf

__all__ = ["EXPORT_FORMATS", "export_adapter", "export_gguf", "export_merged", "export_merged_gguf"]

# The names `fmops finetune export --format` and the API take.
EXPORT_FORMATS = ("adapter", "merged", "gguf", "gguf-lora")

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_adapter(adapter_dir: Path, out: Path) -> Path:
    """Copy the PEFT adapter (config + safetensors, and the tokenizer files beside them)."""
    if not all((adapter_dir / name).is_file() for name in ADAPTER_FILES):
        raise UserError(f"no PEFT adapter in {adapter_dir}", param="adapter")
    out.mkdir(parents=True, exist_ok=True)
    for path in adapter_dir.iterdir():
        if path.is_file() and path.suffix in (".json", ".safetensors", ".jinja", ".txt", ".model"):
            shutil.copy2(path, out / path.name)  # never the pickled training_args.bin
    return out


def export_merged(base_weights: str, adapter_dir: Path, out: Path) -> Path:
    """The base with the adapter merged in, as a plain transformers folder (safetensors)."""
    from peft import PeftModel

    from fmops.finetune.base_model import load_for_training

    model, tokenizer = load_for_training(base_weights)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def export_gguf(adapter_dir: Path, base_gguf: Path, out: Path, written: Path | None = None) -> Path:
    """The GGUF LoRA llama.cpp loads over `base_gguf` (`lora_path`): a copy of the one the run wrote, or
    converted now."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if written is not None and written.is_file():
        shutil.copy2(written, out)
        return out
    return adapter_to_gguf(adapter_dir, base_gguf, out)


def export_merged_gguf(adapter_dir: Path, base_gguf: Path, out: Path, served: Path | None = None) -> Path:
    """The merged GGUF: a copy of the one the run serves, or merged now (a run served as a LoRA)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if served is not None and served.is_file():
        shutil.copy2(served, out)
        return out
    return merge_into_gguf(adapter_dir, base_gguf, out)
