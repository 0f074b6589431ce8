"""Training progress as plain Python callbacks, so the job runtime (or a script) can log it.

`ProgressReporter` is a transformers `TrainerCallback` that turns the Trainer's log records into
`ProgressEvent`s (step, loss, learning rate, trained tokens per second, ETA, validation loss) and
tells the caller about every checkpoint written. It also carries stop requests in: asked to stop,
it has the Trainer write a checkpoint at the end of the current step, then interrupts training,
so a cancelled or shut-down job loses at most one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from fmops.finetune.events import ProgressEvent, TrainingInterrupted

__all__ = ["ProgressReporter"]


class ProgressReporter(TrainerCallback):
    def __init__(
        self,
        on_event: Callable[[ProgressEvent], None] | None = None,
        on_checkpoint: Callable[[Path, int], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        self.on_event = on_event
        self.on_checkpoint = on_checkpoint
        self.stop_requested = stop_requested
        self.events: list[ProgressEvent] = []
        self._stopping = False
        self._started = time.perf_counter()
        self._start_step = 0
        self.start_tokens = 0
        self._last = (time.perf_counter(), 0)  # (time, tokens) at the previous train log

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        now = time.perf_counter()
        self._started = now
        self._start_step = state.global_step  # > 0 when resuming
        self.start_tokens = int(state.num_input_tokens_seen or 0)
        self._last = (now, self.start_tokens)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stop_requested is not None and self.stop_requested():
            self._stopping = True
            control.should_save = True  # the Trainer saves after this step, then on_save interrupts

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if self.on_checkpoint is not None and folder.is_dir():
            self.on_checkpoint(folder, state.global_step)
        if self._stopping:
            raise TrainingInterrupted(f"stopped after step {state.global_step}; checkpoint {folder.name}")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        now = time.perf_counter()
        tokens = int(state.num_input_tokens_seen or 0)
        elapsed = now - self._started
        done = state.global_step - self._start_step
        eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
        if "eval_loss" in logs:
            event = ProgressEvent(
                "eval",
                state.global_step,
                state.max_steps,
                float(state.epoch or 0.0),
                eval_loss=float(logs["eval_loss"]),
                tokens=tokens,
                eta_seconds=eta,
                elapsed_seconds=elapsed,
            )
        elif "loss" in logs:
            last_time, last_tokens = self._last
            rate = (tokens - last_tokens) / (now - last_time) if now > last_time else None
            self._last = (now, tokens)
            event = ProgressEvent(
                "train",
                state.global_step,
                state.max_steps,
                float(state.epoch or 0.0),
                loss=float(logs["loss"]),
                learning_rate=float(logs["learning_rate"]) if "learning_rate" in logs else None,
                tokens=tokens,
                tokens_per_second=rate,
                eta_seconds=eta,
                elapsed_seconds=elapsed,
            )
        else:
            return  # the end-of-training summary: reported by the trainer's result instead
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
