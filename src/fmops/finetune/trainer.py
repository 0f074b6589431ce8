"""One LoRA fine-tune with TRL's SFTTrainer or DPOTrainer over PEFT: train, checkpoint, resume, save.

`train()` is the whole run and knows nothing of jobs: the job kind (job.py), the benchmark and the
tests call it alike. Checkpoints are the Trainer's own (`checkpoint-<step>` folders with optimizer,
scheduler and RNG state); `resume=True` continues from the newest one, so a run killed at any point
ends with the same weights (within noise) as one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmops.errors import UserError
from fmops.finetune.checkpoints import last_checkpoint
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import Splits
from fmops.finetune.events import ProgressEvent
from fmops.finetune.progress import ProgressReporter

__all__ = ["TrainResult", "drop_too_long", "last_checkpoint", "train"]


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    events: list[ProgressEvent] = field(default_factory=list)
    resumed_from: str | None = None


def _length(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def drop_too_long(splits: Splits, tokenizer: Any, method: Method, max_length: int | None) -> Splits:
    """Leave out rows longer than max_length (truncating them would cut the answer being taught)."""
    if not max_length:
        return splits

    def fits(row: dict[str, Any]) -> bool:
        answers = [row["completion"]] if method == Method.sft else [row["chosen"], row["rejected"]]
        return all(_length(tokenizer, row["prompt"] + answer) <= max_length for answer in answers)

    kept = Splits(skipped=dict(splits.skipped))
    for name in ("train", "validation"):
        for row in getattr(splits, name):
            if fits(row):
                getattr(kept, name).append(row)
            else:
                kept.skip(f"longer than max_length={max_length}")
    if not kept.train:
        raise UserError(
            f"every training record is longer than max_length={max_length} tokens; raise max_length in"
            " the config (the base model's context permitting) or shorten the records",
            param="config.max_length",
        )
    return kept


def _device_overrides(config: FinetuneConfig) -> dict[str, Any]:
    import torch

    user = config.training
    if torch.cuda.is_available():
        return {"bf16": user.get("bf16", torch.cuda.is_bf16_supported())}
    if user.get("bf16") or user.get("fp16"):
        raise UserError(
            "bf16/fp16 training needs a GPU; on this CPU-only machine remove bf16/fp16 from the config",
            param="config.bf16",
        )
    return {"bf16": False, "use_cpu": True}


def train(
    *,
    base_weights: str,
    config: FinetuneConfig,
    splits: Splits,
    output_dir: Path,
    resume: bool = True,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    local_files_only: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on `splits`; checkpoints in `output_dir`, the adapter in `output_dir/adapter`."""
    import torch
    from transformers import PrinterCallback

    import datasets
    from fmops.finetune.base_model import load_for_training

    datasets.disable_progress_bars()

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model, tokenizer = load_for_training(base_weights, local_files_only=local_files_only)
    values = config.training_values()
    splits = drop_too_long(splits, tokenizer, config.method, values.get("max_length"))
    overrides = _device_overrides(config)
    if splits.validation and "eval_strategy" not in config.training:
        overrides["eval_strategy"] = "steps"
        overrides.setdefault("eval_steps", values.get("save_steps", 25))
    args = config.trl_args(output_dir, **overrides)
    reporter = ProgressReporter(on_event, on_checkpoint, stop_requested)
    train_set = datasets.Dataset.from_list(splits.train)
    eval_set = datasets.Dataset.from_list(splits.validation) if splits.validation else None
    common: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": train_set,
        "eval_dataset": eval_set,
        "processing_class": tokenizer,
        "peft_config": config.peft_config(),
        "callbacks": [reporter],
    }
    trainer: Any
    try:
        if config.method == Method.dpo:
            from trl.trainer.dpo_trainer import DPOTrainer

            trainer = DPOTrainer(**common)
        else:
            from trl.trainer.sft_trainer import SFTTrainer

            trainer = SFTTrainer(**common)
    except ValueError as exc:  # TRL's checks of the data against the settings
        raise UserError(f"TRL refused the training setup: {exc}", param="config") from exc
    trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not stdout
    checkpoint = last_checkpoint(output_dir) if resume else None
    started = time.perf_counter()
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except torch.OutOfMemoryError as exc:
        raise UserError(
            "out of memory while training: lower per_device_train_batch_size (raise"
            " gradient_accumulation_steps to keep the same effective batch), lower max_length, or set"
            " gradient_checkpointing: true",
            param="config.per_device_train_batch_size",
        ) from exc
    seconds = time.perf_counter() - started
    adapter_dir = output_dir / "adapter"
    trainer.save_model(str(adapter_dir))  # adapter_model.safetensors + adapter_config.json
    tokenizer.save_pretrained(str(adapter_dir))
    metrics: dict[str, Any] = {
        "train_loss": float(output.training_loss),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "train_records": len(splits.train),
        "validation_records": len(splits.validation),
        "skipped_records": dict(splits.skipped),
        "train_seconds": round(seconds, 3),
    }
    losses = [e.loss for e in reporter.events if e.loss is not None]
    if losses:
        metrics["final_loss"] = losses[-1]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    first_tokens = reporter.start_tokens
    if tokens:
        metrics["trained_tokens"] = tokens
        metrics["tokens_per_second"] = round((tokens - first_tokens) / seconds, 2) if seconds else None
    if eval_set is not None:
        evaluated = trainer.evaluate()
        loss = evaluated.get("eval_loss")
        if loss is not None and math.isfinite(loss):
            metrics["eval_loss"] = float(loss)
    return TrainResult(
        adapter_dir, metrics, list(reporter.events), str(checkpoint.name) if checkpoint else None
    )
