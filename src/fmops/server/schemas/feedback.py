"""Bodies of the feedback routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fmops.feedback import FeedbackCreate, ScoreKind, ScoreSource
from fmops.server.schemas.base import Output

__all__ = ["FeedbackCreate", "ScorePublic"]


class ScorePublic(Output):
    id: str
    trace_id: str
    span_id: str | None
    name: str
    kind: ScoreKind
    value: float | None
    label: str | None
    comment: str | None
    corrected_output: Any
    source: ScoreSource
    author: str | None
    created_at: datetime
