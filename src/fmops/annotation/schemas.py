"""What a queue is made from and what a decision holds, shared by the API, the CLI and the console."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Value = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]
MAX_VALUES = 9  # one number key (1-9) per value on the annotator's page
MAX_ITEMS = 10_000


class Action(StrEnum):
    accept = "accept"  # the model's answer is right
    correct = "correct"  # it should have been the corrected answer
    skip = "skip"  # not for this person to decide; the item stays open for others


class LabelField(BaseModel):
    """A category an annotator picks one value of, e.g. `topic` in billing, shipping, other."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    values: list[Value] = Field(min_length=2, max_length=MAX_VALUES, json_schema_extra={"uniqueItems": True})
    required: bool = False

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values


class QueueCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str | None = Field(None, max_length=2000)
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Trace filters as in GET /api/traces (model, endpoint, prompt_name, prompt_version, "
        "variant, start, end, user, feedback, score_name, min_score, ...)",
    )
    sampling_rate: float = Field(1.0, gt=0, le=1, description="Share of matching traces queued (by trace id)")
    max_items: int = Field(1000, ge=1, le=MAX_ITEMS)
    label_schema: list[LabelField] = Field(default_factory=list, max_length=10)
    overlap: int = Field(
        1, ge=1, le=5, description="How many people decide each item (2+ measures agreement)"
    )
    annotators: list[Name] = Field(
        default_factory=list, max_length=100, description="User names who may work it; empty: every annotator"
    )
    dataset: Name | None = Field(
        None, description="Dataset its export adds a version to; default the queue's name"
    )

    @model_validator(mode="after")
    def _distinct_fields(self) -> QueueCreate:
        names = [f.name for f in self.label_schema]
        if len(set(names)) != len(names):
            raise ValueError("label_schema: field names must be distinct")
        return self


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    corrected_output: str | None = Field(None, min_length=1, max_length=100_000, description="For correct")
    labels: dict[Name, Value] = Field(default_factory=dict, max_length=10)
