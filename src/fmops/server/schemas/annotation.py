"""Bodies of the annotation queue routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fmops.annotation import DecisionCreate, LabelField, QueueCreate
from fmops.server.schemas.base import Input, Output

__all__ = [
    "AgreementPublic",
    "DecisionCreate",
    "DecisionPublic",
    "ExportCreate",
    "ItemPublic",
    "NextItem",
    "ProgressPublic",
    "QueueCreate",
    "QueueDetail",
    "QueuePublic",
]


class ProgressPublic(Output):
    total: int
    done: int = Field(description="Items decided by `overlap` people")
    skipped: int = Field(description="Items not done that someone skipped")
    remaining: int
    mine_done: int = Field(description="Your accepted or corrected items")
    mine_skipped: int
    mine_remaining: int = Field(description="Open items you have not decided")


class QueuePublic(Output):
    id: str
    name: str
    description: str | None
    filter: dict[str, Any]
    sampling_rate: float
    label_schema: list[LabelField]
    overlap: int
    annotators: list[str]
    dataset: str
    created_by: str
    created_at: datetime
    progress: ProgressPublic


class AgreementPublic(Output):
    field: str = Field(description="A label field, or `verdict` (accept vs correct)")
    pairs: int
    observed: float | None
    kappa: float | None = Field(description="Cohen's kappa; null until two people decided an item")


class QueueDetail(QueuePublic):
    agreement: list[AgreementPublic]


class ItemPublic(Output):
    id: str
    position: int
    trace_id: str
    span_id: str
    input: Any
    output: Any


class NextItem(Output):
    item: ItemPublic | None = Field(description="null when nothing is left for you")
    progress: ProgressPublic


class DecisionPublic(Output):
    id: str
    item_id: str
    user_name: str
    action: str
    corrected_output: Any
    labels: dict[str, str]
    created_at: datetime


class ExportCreate(Input):
    dataset: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Dataset to add the version to; default the queue's",
    )
