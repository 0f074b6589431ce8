"""What a score is made of, shared by the HTTP API, the SDK and evaluators.

Each kind is its own body, told apart by `kind`, so what a kind needs (a thumbs' ±1, a label's
label, a correction's output) is stated in the JSON schema, not only checked by the server.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, TypeAdapter

from fmops.numbers import NumbersOnly


class ScoreKind(StrEnum):
    thumbs = "thumbs"  # value 1 (up) or -1 (down); true/false are accepted
    number = "number"  # any finite value, e.g. a judge's 1-5 or a 0-1 similarity
    label = "label"  # a category, e.g. "off-topic"
    comment = "comment"  # free text
    correction = "correction"  # what the output should have been


class ScoreSource(StrEnum):
    human = "human"  # a person, e.g. thumbs in the chat UI
    evaluator = "evaluator"  # an online or offline scorer
    api = "api"  # an application reporting its own signal (e.g. "the user copied the answer")


def _not_a_string(value: object) -> object:
    if isinstance(value, str):
        raise ValueError("must be 1, -1, true or false")
    return value


Number = Annotated[float, Field(allow_inf_nan=False), NumbersOnly]
Id = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9a-zA-Z]+$")]
Comment = Annotated[str, Field(min_length=1, max_length=20_000)]
Label = Annotated[str, Field(min_length=1, max_length=200)]


class _Score(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)

    trace_id: Id
    span_id: Id | None = Field(None, description="One span of the trace; the whole trace when absent")
    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="What is scored, e.g. helpfulness; defaults to the kind",
    )
    source: ScoreSource = ScoreSource.human
    author: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Evaluator name (engineers only); people are recorded as their user",
    )
    # Shared so the service reads every kind alike; each kind below requires what it needs.
    value: float | None = None
    label: str | None = None
    comment: str | None = None
    corrected_output: Any = None


class ThumbsCreate(_Score):
    kind: Literal["thumbs"]
    value: Annotated[Literal[1, -1] | StrictBool, BeforeValidator(_not_a_string)]
    comment: Comment | None = None


class NumberCreate(_Score):
    kind: Literal["number"]
    value: Number
    comment: Comment | None = None


class LabelCreate(_Score):
    kind: Literal["label"]
    label: Label
    value: Number | None = None
    comment: Comment | None = None


class CommentCreate(_Score):
    kind: Literal["comment"]
    comment: Comment


class CorrectionCreate(_Score):
    kind: Literal["correction"]
    corrected_output: dict[str, Any] | list[Any] | str = Field(
        description="The output it should have been: a message, content parts or text"
    )
    comment: Comment | None = None


FeedbackCreate = Annotated[
    ThumbsCreate | NumberCreate | LabelCreate | CommentCreate | CorrectionCreate,
    Field(discriminator="kind"),
]
FEEDBACK = TypeAdapter[FeedbackCreate](FeedbackCreate)


def parse_feedback(data: Any) -> FeedbackCreate:
    """A score body from JSON-like data (SDK, evaluators, tests); raises pydantic's ValidationError."""
    return FEEDBACK.validate_python(data)
