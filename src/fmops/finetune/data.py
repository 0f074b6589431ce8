"""Dataset records as TRL's trainers take them, split by `metadata.split`.

Chat records become TRL's conversational prompt-completion rows: every turn before the last is the
prompt and the final assistant turn is the completion, so `completion_only_loss` trains on the
answer only. Preference records are already TRL's conversational preference format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fmops.errors import UserError
from fmops.finetune.config import Method

__all__ = ["KIND_FOR_METHOD", "MIN_TRAIN_RECORDS", "Splits", "split_records", "to_trl_row", "wrong_kind"]

MIN_TRAIN_RECORDS = 2
KIND_FOR_METHOD = {Method.sft: "chat", Method.dpo: "preference"}


@dataclass
class Splits:
    train: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _messages(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or not value:
        return None
    out = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return None
        out.append({"role": str(message.get("role", "")), "content": message["content"]})
    return out


def to_trl_row(method: Method, record: dict[str, Any]) -> dict[str, Any] | None:
    """One record as a TRL row, or None when it cannot train (e.g. a chat not ending with an answer)."""
    if method == Method.sft:
        messages = _messages(record.get("messages"))
        if messages is None or len(messages) < 2 or messages[-1]["role"] != "assistant":
            return None
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    prompt, chosen, rejected = (_messages(record.get(k)) for k in ("prompt", "chosen", "rejected"))
    if prompt is None or chosen is None or rejected is None:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def wrong_kind(method: Method, kind: str, what: str = "this dataset") -> str:
    """Why `method` cannot train on records of `kind`, and what to use instead."""
    wanted = KIND_FOR_METHOD[method]
    hint = {
        (Method.dpo, "chat"): "; build preference pairs from feedback (fmops data from-traces NAME"
        " --preference), or fine-tune this dataset with method sft",
        (Method.sft, "preference"): "; train on preference pairs with method dpo",
    }.get((method, kind), f"; choose a {wanted} dataset")
    return f"method {method} trains on {wanted} records, but {what} holds {kind} records{hint}"


def split_records(method: Method, kind: str, batches: Iterable[list[dict[str, Any]]]) -> Splits:
    """Train rows (split "train" or none), validation rows (split "validation"); test rows are left out."""
    wanted = KIND_FOR_METHOD[method]
    if str(kind) != wanted:
        raise UserError(wrong_kind(method, str(kind)), param="dataset")
    splits = Splits()
    for batch in batches:
        for record in batch:
            split = (record.get("metadata") or {}).get("split") or "train"
            if split == "test":
                continue
            row = to_trl_row(method, record)
            if row is None:
                splits.skip("does not end with an assistant answer" if method == Method.sft else "malformed")
                continue
            (splits.validation if split == "validation" else splits.train).append(row)
    if len(splits.train) < MIN_TRAIN_RECORDS:
        raise UserError(
            f"the dataset has {len(splits.train)} usable training records; fine-tuning needs at least"
            f" {MIN_TRAIN_RECORDS} (and a few hundred to learn a task)",
            param="dataset",
        )
    return splits
