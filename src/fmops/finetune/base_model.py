"""The model a fine-tune starts from: where its weights are, and a copy the Trainer accepts.

A catalog model served by llama.cpp is a GGUF file. transformers reads GGUF (dequantized to fp32)
but marks such a model as quantized, and the Trainer refuses it; so the first fine-tune of a GGUF
base saves it once as plain fp32 safetensors under `$FMOPS_HOME/finetune/bases/` and every later
run loads that copy (a fraction of a second instead of ~20 s of dequantizing). The GGUF itself
stays the serving base: llama.cpp loads the fine-tune's GGUF LoRA over it.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmops.catalog.entry import ModelEntry
from fmops.errors import UserError

__all__ = ["BaseSource", "base_from_entry", "base_from_name", "load_for_training", "prepare_base"]


@dataclass(frozen=True)
class BaseSource:
    """A base model's weights as transformers loads them."""

    name: str  # what the user named: a catalog alias, a hub id, a folder
    weights: str  # a folder or a hub id
    gguf_file: str | None = None  # a GGUF file inside `weights`, when the weights are GGUF
    local_files_only: bool = True

    @property
    def serving_gguf(self) -> Path | None:
        """The GGUF llama.cpp serves the fine-tune over (None: served by transformers instead)."""
        return Path(self.weights) / self.gguf_file if self.gguf_file else None


def base_from_entry(entry: ModelEntry) -> BaseSource:
    """A catalog model's weights; a model without local weights (a remote API) cannot be trained."""
    if entry.provider == "llamacpp":
        from fmops.providers.llamacpp import DEFAULT_MODEL_ALIASES, default_chat_model_path

        path: Path | None = Path(entry.provider_model).expanduser()
        if entry.provider_model in DEFAULT_MODEL_ALIASES:
            path = default_chat_model_path()
        if path is None or not path.is_file():
            raise UserError(f"the GGUF file of model {entry.alias!r} is missing: {path}", param="base")
        return BaseSource(entry.alias, str(path.parent), path.name)
    if entry.provider == "transformers":
        gguf = entry.options.get("gguf_file")
        return BaseSource(entry.alias, entry.provider_model, str(gguf) if gguf else None)
    if entry.provider == "vllm":  # vLLM serves a Hugging Face id or folder: the same weights train
        return BaseSource(entry.alias, entry.provider_model)
    raise UserError(
        f"model {entry.alias!r} is served by the {entry.provider} provider and has no weights fmops can"
        " train; choose a llamacpp, transformers or vllm model, a Hugging Face model id or a model folder",
        param="base",
    )


def base_from_name(name: str, models_root: Path) -> BaseSource:
    """A base that is not in the catalog: a .gguf file or model folder under `models_root`
    ($FMOPS_HOME/models, as for models added over the API), or a Hugging Face id already downloaded."""
    root = models_root.resolve()
    path = Path(name).expanduser()
    candidate = path if path.is_absolute() else root / path
    if not (
        path.is_absolute() or name.startswith((".", "~")) or name.endswith(".gguf") or candidate.exists()
    ):
        return BaseSource(name, name)  # a Hugging Face id (loaded from the local cache only)
    anchored = candidate.resolve()  # symlinks followed: one leading out of the folder is refused
    if anchored != root and root not in anchored.parents:
        raise UserError(
            f"local base models must live under {root}; put the folder or file there", param="base"
        )
    if anchored.is_file() and anchored.suffix == ".gguf":
        return BaseSource(name, str(anchored.parent), anchored.name)
    if anchored.is_dir():
        if not (anchored / "config.json").is_file():
            raise UserError(f"{anchored} is not a transformers model folder (no config.json)", param="base")
        return BaseSource(name, str(anchored))
    raise UserError(f"base model {name!r} is neither a model folder nor a .gguf file", param="base")


def _cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    raw = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def prepare_base(source: BaseSource, cache_root: Path) -> str:
    """What `from_pretrained` loads for training: the folder or id itself, or the fp32 copy of a GGUF."""
    gguf = source.serving_gguf
    if gguf is None:
        return source.weights
    if not gguf.is_file():
        raise UserError(f"base model file not found: {gguf}", param="base")
    target = cache_root / _cache_key(gguf)
    if (target / "config.json").is_file():
        return str(target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except (ValueError, OSError, KeyError, NotImplementedError) as exc:
        raise UserError(
            f"base model {source.name!r} cannot be fine-tuned: transformers cannot load its GGUF ({exc})",
            param="base",
        ) from exc
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are fp32 now; the Trainer refuses "quantized" models
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(model.state_dict())
    partial = cache_root / f".{target.name}.{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        plain.save_pretrained(str(partial), safe_serialization=True)
        tokenizer.save_pretrained(str(partial))
        partial.rename(target)  # atomic: a crash never leaves a half-written base behind
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "config.json").is_file():  # not another job converting the same file at once
            raise
    return str(target)


def load_for_training(weights: str, *, local_files_only: bool = True) -> tuple[Any, Any]:
    """Model (fp32, safetensors only: pickled weights are code) and tokenizer, or a clear error."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(weights, local_files_only=local_files_only)
        model = AutoModelForCausalLM.from_pretrained(
            weights, dtype=torch.float32, use_safetensors=True, local_files_only=local_files_only
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot load base model {weights!r} for training: {exc}. A Hugging Face id must already be"
            " downloaded (huggingface-cli download ID) and hold safetensors weights",
            param="base",
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
