"""One LoRA fine-tune with TRL's SFTTrainer or DPOTrainer over PEFT: train, checkpoint, resume, save.

`train()` is the whole run and knows nothing of jobs: the job kind (job.py), the benchmark and the
tests call it alike. Checkpoints are the Trainer's own (`checkpoint-<step>` folders with optimizer,
scheduler and RNG state); `resume=True` continues from the newest one, so a run killed at any point
ends with the same weights (within noise) as one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmops.errors import UserError
from fmops.finetune.checkpoints import last_checkpoint
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import Splits
from fmops.finetune.events import ProgressEvent
from fmops.finetune.progress import ProgressReporter

__all__ = [
    "TrainResult",
    "context_length",
    "drop_too_long",
    "last_checkpoint",
    "out_of_memory_hint",
    "sequence_limit",
    "train",
]


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


def context_length(model: Any) -> int | None:
    """The longest sequence the base model takes (its position embeddings), when it says."""
    value = getattr(model.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def sequence_limit(max_length: int | None, context: int | None) -> int | None:
    """The length rows must fit: max_length, which may not exceed the base model's context."""
    if max_length is not None and context is not None and max_length > context:
        raise UserError(
            f"max_length={max_length} is longer than the base model's context of {context} tokens; set"
            f" max_length to {context} or less",
            param="config.max_length",
        )
    return max_length or context


def drop_too_long(splits: Splits, tokenizer: Any, method: Method, max_length: int | None) -> Splits:
    """Leave out rows longer than max_length (truncating them would cut the answer being taught); the
    count is in `skipped` under "longer than max_length=N"."""
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


OUT_OF_MEMORY = (
    "out of memory while training: lower per_device_train_batch_size (raise"
    " gradient_accumulation_steps to keep the same effective batch), lower max_length, or set"
    " gradient_checkpointing: true"
)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    # The CPU allocator's failure is a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory").
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)


@contextmanager
def out_of_memory_hint() -> Iterator[None]:
    """An allocation that fails (GPU or CPU) becomes a UserError naming the settings that lower memory."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        raise UserError(OUT_OF_MEMORY, param="config.per_device_train_batch_size") from exc


def _dpo_trainer() -> type[Any]:
    """TRL's DPOTrainer, able to group batches by length.

    Its tokenized rows hold prompt/chosen/rejected ids but no `input_ids`, so transformers cannot
    infer the lengths `train_sampling_strategy: group_by_length` sorts by (a ValueError at the first
    batch): give the rows a length column (the prompt and the longer answer) and keep it through
    the removal of the columns the model does not take.
    """
    from trl.trainer.dpo_trainer import DPOTrainer

    import datasets

    class LengthGroupedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            column = args.length_column_name
            grouped = args.train_sampling_strategy == "group_by_length"
            if not grouped or not isinstance(dataset, datasets.Dataset) or column in dataset.column_names:
                return dataset

            def length(row: dict[str, Any]) -> dict[str, int]:
                answer = max(len(row["chosen_ids"]), len(row["rejected_ids"]))
                return {column: len(row["prompt_ids"]) + answer}

            return dataset.map(length)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()  # type: ignore[no-untyped-call]
            column = self.args.length_column_name
            if self._signature_columns is not None and column not in self._signature_columns:
                self._signature_columns.append(column)  # the collator ignores it; the sampler reads it

    return LengthGroupedDPOTrainer


DPO_METRICS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def _preference_metrics(log_history: list[dict[str, Any]], evaluated: dict[str, Any]) -> dict[str, Any]:
    """DPO's reward margins and accuracies: at the first and the last logging step, and on validation."""
    logged = [entry for entry in log_history if "rewards/margins" in entry and "loss" in entry]
    out: dict[str, Any] = {}
    if logged:
        out["first"] = {k: float(logged[0][k]) for k in DPO_METRICS if k in logged[0]}
        out["last"] = {k: float(logged[-1][k]) for k in DPO_METRICS if k in logged[-1]}
    validation = {k: float(evaluated[f"eval_{k}"]) for k in DPO_METRICS if f"eval_{k}" in evaluated}
    if validation:
        out["validation"] = validation
    return out


def _notes(splits: Splits, before: Splits, limit: int | None) -> list[str]:
    """What the caller should tell the user about the data this run trains on."""
    notes = []
    dropped = sum(len(getattr(before, n)) - len(getattr(splits, n)) for n in ("train", "validation"))
    if dropped:
        notes.append(
            f"left out {dropped} records longer than {limit} tokens (max_length or the base model's"
            " context); raise max_length to train on them"
        )
    if not splits.validation:
        notes.append(
            "no validation records (metadata.split = validation): training without a validation loss;"
            " split the dataset (curation's split step) to measure one"
        )
    return notes


_COMPACT_LM_HEAD = False


def _score_labelled_positions_only() -> None:
    """TRL's fused LM head (log-probabilities in vocabulary tiles, never the full logits) projects only
    the positions that carry a label on Triton devices, but every position elsewhere, so that the tile
    shapes stay fixed for compilers. Eager CPU training has no compiler to please, and with
    completion-only loss most positions are prompt or padding: scoring only the labelled ones cuts the
    LM head's time and its tile memory (vocabulary 49,152 for SmolLM2) in the same proportion. The
    loss is the same; benchmarks/finetune_vs_trl.py measures the gain."""
    global _COMPACT_LM_HEAD
    if _COMPACT_LM_HEAD:
        return
    import trl.trainer.utils as trl_utils

    use_triton = getattr(trl_utils, "_use_triton", None)
    if not callable(use_triton):  # another TRL version: its own behaviour, unchanged
        return

    def compact(device: Any) -> bool:
        return bool(device.type == "cpu" or use_triton(device))

    trl_utils._use_triton = compact  # type: ignore[attr-defined]  # read only by add_fused_lm_head
    _COMPACT_LM_HEAD = True


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
    on_note: Callable[[str], None] | None = None,
    local_files_only: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on `splits`; checkpoints in `output_dir`, the adapter in `output_dir/adapter`.

    One process; under torchrun (or a Ray Train worker) every rank calls it alike and the Trainer
    shares the batches out; only rank 0 writes the adapter (see fmops.finetune.launch).
    """
    import torch
    from transformers import PrinterCallback

    import datasets
    from fmops.finetune.base_model import load_for_training

    datasets.disable_progress_bars()

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model, tokenizer = load_for_training(base_weights, local_files_only=local_files_only)
    values = config.training_values()
    limit = sequence_limit(values.get("max_length"), context_length(model))
    before = splits
    splits = drop_too_long(splits, tokenizer, config.method, limit)
    for note in _notes(splits, before, limit):
        if on_note is not None:
            on_note(note)
    overrides = _device_overrides(config)
    if "ddp_find_unused_parameters" not in config.training:
        # Under torchrun every LoRA weight takes part in each forward pass; without this, DDP walks
        # the autograd graph every step looking for unused ones (transformers' choice for PEFT models).
        overrides["ddp_find_unused_parameters"] = False
    _score_labelled_positions_only()
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
    with out_of_memory_hint():
        try:
            if config.method == Method.dpo:
                trainer = _dpo_trainer()(**common)
            else:
                from trl.trainer.sft_trainer import SFTTrainer

                trainer = SFTTrainer(**common)
        except ValueError as exc:  # TRL's checks of the data against the settings
            raise UserError(f"TRL refused the training setup: {exc}", param="config") from exc
        trainer.remove_callback(PrinterCallback)  # progress goes to the reporter, not stdout
        checkpoint = last_checkpoint(output_dir) if resume else None
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        seconds = time.perf_counter() - started
        adapter_dir = output_dir / "adapter"
        trainer.save_model(str(adapter_dir))  # adapter_model.safetensors + adapter_config.json (rank 0)
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(adapter_dir))
        evaluated = trainer.evaluate() if eval_set is not None else {}
    metrics: dict[str, Any] = {
        "train_loss": float(output.training_loss),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "train_records": len(splits.train),
        "validation_records": len(splits.validation),
        "skipped_records": dict(splits.skipped),
        "train_seconds": round(seconds, 3),
    }
    if args.world_size > 1:
        metrics["processes"] = int(args.world_size)
    losses = [e.loss for e in reporter.events if e.loss is not None]
    if losses:
        metrics["final_loss"] = losses[-1]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    first_tokens = reporter.start_tokens
    if tokens:
        metrics["trained_tokens"] = tokens
        metrics["tokens_per_second"] = round((tokens - first_tokens) / seconds, 2) if seconds else None
    loss = evaluated.get("eval_loss")
    if loss is not None and math.isfinite(loss):
        metrics["eval_loss"] = float(loss)
    if config.method == Method.dpo:
        metrics["preference"] = _preference_metrics(trainer.state.log_history, evaluated)
    return TrainResult(
        adapter_dir, metrics, list(reporter.events), str(checkpoint.name) if checkpoint else None
    )
