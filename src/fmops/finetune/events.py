"""What a training run reports, without importing the training libraries (the job module loads in
every worker and server; torch and transformers load only when a run starts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ProgressEvent", "TrainingInterrupted"]


class TrainingInterrupted(Exception):
    """Training stopped on request after saving a checkpoint (cancel, shutdown)."""


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "train" (a logging step), "eval" (validation loss)
    step: int
    max_steps: int
    epoch: float
    loss: float | None = None
    learning_rate: float | None = None
    eval_loss: float | None = None
    tokens: int = 0  # trained tokens (non-padding) so far
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0

    @property
    def fraction(self) -> float:
        return self.step / self.max_steps if self.max_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
