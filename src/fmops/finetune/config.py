"""Fine-tuning settings: TRL's `SFTConfig`/`DPOConfig` field names, PEFT's `LoraConfig` under `lora:`.

Users write the names they already know from TRL and PEFT; fmops only fills in defaults that work
for the default model on a CPU and refuses the few fields it manages itself (where checkpoints go,
what is pushed where, code loaded from a hub). Values are checked by building the real TRL and PEFT
objects, so a wrong type or range is reported in TRL's own words, naming the setting.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from fmops.errors import UserError

__all__ = [
    "LORA_DEFAULTS",
    "MANAGED",
    "FinetuneConfig",
    "Method",
    "load_config",
    "training_fields",
]


class Method(StrEnum):
    sft = "sft"
    dpo = "dpo"


# Chosen for speed on a CPU at no more memory than TRL's defaults (benchmarks/finetune_vs_trl.py
# compares them): no gradient checkpointing (it runs every layer's forward twice), which costs
# activation memory, won back by micro-batches of 4 with 2 accumulation steps (the same effective batch
# of 8 and optimizer steps) and by LoRA without dropout (PEFT's own default; dropout keeps a copy of
# every adapted layer's input); length-grouped batches (less padding) instead of TRL's padding-free
# packing (which the issue measured 3x slower on this CPU). The trainer also has TRL's fused LM head
# score only the answer's positions on a CPU (trainer._score_labelled_positions_only).
COMMON_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3,
    "learning_rate": 5e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 5,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "per_device_eval_batch_size": 8,
    "max_length": 512,
    "gradient_checkpointing": False,
    "train_sampling_strategy": "group_by_length",
    "bf16": False,  # set per device when the job starts (bf16 fails on CPUs without it)
    "logging_steps": 5,
    "save_strategy": "steps",
    "save_steps": 25,
    "save_total_limit": 2,
    "seed": 42,
    "report_to": "none",
    "include_num_input_tokens_seen": "non_padding",
    "disable_tqdm": True,
}
METHOD_DEFAULTS: dict[Method, dict[str, Any]] = {
    Method.sft: {"completion_only_loss": True},
    Method.dpo: {"learning_rate": 5e-5, "num_train_epochs": 1, "beta": 0.1},
}
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": "all-linear",
    "bias": "none",
    "task_type": "CAUSAL_LM",
}
# Set by fmops (paths, hub pushes) or refused because they load code or files named by the user.
MANAGED = frozenset(
    {
        "output_dir",
        "logging_dir",
        "resume_from_checkpoint",
        "overwrite_output_dir",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "trust_remote_code",
        "model_init_kwargs",
        "chat_template_path",
        "deepspeed",
        "fsdp_config",
        "accelerator_config",
        "dataset_text_field",
        "dataset_kwargs",
        "do_train",
        "do_eval",
        "do_predict",
        "eval_on_start",
    }
)
LORA_MANAGED = frozenset({"base_model_name_or_path", "revision", "inference_mode", "runtime_config"})
# fmops's own settings, beside TRL's.
EXTRA_FIELDS: dict[str, type] = {"num_threads": int, "num_processes": int, "serve_as": str}
# How llama.cpp serves a fine-tune of a GGUF base: the LoRA merged into a copy of the base (base
# speed, a full copy on disk) or the GGUF LoRA applied over the shared base (a few MB, slower decode).
SERVE_AS = ("merged", "lora")


def _training_args_class(method: Method) -> type[Any]:
    try:
        if method == Method.dpo:
            from trl.trainer.dpo_config import DPOConfig

            return DPOConfig
        from trl.trainer.sft_config import SFTConfig

        return SFTConfig
    except ImportError as exc:
        raise UserError(
            "fine-tuning needs the local training libraries: pip install 'fmops[local]'", param="method"
        ) from exc


def training_fields(method: Method) -> frozenset[str]:
    """The settings a config may name for this method (TRL's fields, less those fmops manages)."""
    names = {f.name for f in dataclasses.fields(_training_args_class(method)) if f.init}
    return frozenset((names - MANAGED) | EXTRA_FIELDS.keys())


def _check_type(section: str, key: str, value: Any, default: Any) -> None:
    """TRL's dataclasses do not check types; a number given as text would fail deep in training."""
    if default is None or value is None or isinstance(default, str | list | dict | tuple):
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        return
    if not ok:
        want = type(default).__name__
        raise UserError(
            f"fine-tuning setting config.{section}{key} must be of type {want}, not {value!r}",
            param=f"config.{section}{key}",
        )


def _defaults(cls: type[Any]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def _lora_fields() -> frozenset[str]:
    from peft import LoraConfig

    return frozenset({f.name for f in dataclasses.fields(LoraConfig) if f.init} - LORA_MANAGED)


def _unknown(key: str, known: frozenset[str], section: str) -> UserError:
    near = difflib.get_close_matches(key, sorted(known), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    if key in MANAGED or key in LORA_MANAGED:
        reason = "is set by fmops and cannot be changed"
    else:
        owner = "PEFT's LoraConfig" if section else "TRL's SFTConfig/DPOConfig"
        reason = f"is not a setting of {owner}"
    where = f"config.{section}{key}"
    return UserError(f"fine-tuning setting {where} {reason}{hint}", param=where)


@dataclass(frozen=True)
class FinetuneConfig:
    """The user's settings over the defaults; `training` holds TRL names, `lora` PEFT names."""

    method: Method = Method.sft
    training: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    num_threads: int | None = None
    num_processes: int = 1  # training processes on this host (torchrun); see fmops.finetune.launch
    serve_as: str = "merged"

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, method: Method | str = Method.sft) -> FinetuneConfig:
        method = Method(method)
        raw = dict(raw or {})
        if not all(isinstance(k, str) for k in raw):
            raise UserError("fine-tuning config keys must be strings", param="config")
        lora = raw.pop("lora", None) or {}
        if not isinstance(lora, dict):
            raise UserError("config.lora must be a mapping of LoraConfig settings", param="config.lora")
        known = training_fields(method)
        defaults = _defaults(_training_args_class(method))
        for key, value in raw.items():
            if key not in known:
                raise _unknown(key, known, "")
            _check_type("", key, value, defaults.get(key))
        from peft import LoraConfig

        lora_known, lora_defaults = _lora_fields(), _defaults(LoraConfig)
        for key, value in lora.items():
            if key not in lora_known:
                raise _unknown(key, lora_known, "lora.")
            _check_type("lora.", key, value, lora_defaults.get(key))
        threads = raw.pop("num_threads", None)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise UserError("num_threads must be a whole number of at least 1", param="config.num_threads")
        processes = raw.pop("num_processes", 1)
        if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= 64:
            raise UserError("num_processes must be a whole number from 1 to 64", param="config.num_processes")
        serve_as = raw.pop("serve_as", "merged")
        if serve_as not in SERVE_AS:
            raise UserError(f"serve_as must be one of {', '.join(SERVE_AS)}", param="config.serve_as")
        config = cls(method, raw, dict(lora), threads, processes, serve_as)
        config.check()
        return config

    def training_values(self) -> dict[str, Any]:
        """Defaults, then the user's settings (which win)."""
        return {**COMMON_DEFAULTS, **METHOD_DEFAULTS[self.method], **self.training}

    def lora_values(self) -> dict[str, Any]:
        return {**LORA_DEFAULTS, **self.lora}

    def to_dict(self) -> dict[str, Any]:
        """The effective settings, as recorded in a model's lineage."""
        out: dict[str, Any] = {"method": str(self.method), **self.training_values()}
        out["lora"] = self.lora_values()
        if self.num_threads is not None:
            out["num_threads"] = self.num_threads
        if self.num_processes != 1:
            out["num_processes"] = self.num_processes
        out["serve_as"] = self.serve_as
        return out

    def trl_args(self, output_dir: Path | str, **overrides: Any) -> Any:
        """TRL's SFTConfig or DPOConfig for this run."""
        cls = _training_args_class(self.method)
        values = _activation_checkpointing({**self.training_values(), **overrides}, cls)
        try:
            return cls(output_dir=str(output_dir), **values)
        except (ValueError, TypeError) as exc:
            raise UserError(f"invalid fine-tuning config: {exc}", param="config") from exc

    def peft_config(self) -> Any:
        from peft import LoraConfig

        try:
            return LoraConfig(**self.lora_values())
        except (ValueError, TypeError) as exc:
            raise UserError(f"invalid fine-tuning config, lora: {exc}", param="config.lora") from exc

    def check(self) -> None:
        """Build TRL's and PEFT's objects once, so a bad value fails at submit, not in the worker."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fmops-ft-check-") as folder:
            self.trl_args(folder, bf16=False, use_cpu=True)
        self.peft_config()


def _activation_checkpointing(values: dict[str, Any], cls: type[Any]) -> dict[str, Any]:
    """Users write TRL's `gradient_checkpointing`; transformers 5 renamed it `activation_checkpointing`
    and warns on the old name, so pass the new one (a value the user gave under it wins)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if new not in fields or old not in fields:
            continue  # an older transformers: the old name is the only one
        value = values.pop(old, fields[old].default)
        if values.get(new) is None:
            values[new] = value
    return values


def load_config(path: Path, method: Method | str = Method.sft) -> FinetuneConfig:
    """Read a YAML config file (TRL field names, `lora:` for PEFT)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read fine-tuning config {path}: {exc}", param="config") from exc
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{path} must hold a mapping of settings", param="config")
    return FinetuneConfig.from_dict(raw, method)
