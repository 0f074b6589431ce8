"""Online evaluator rules: which live traces to sample and which scorer judges them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class EvaluatorRule(Base):
    __tablename__ = "evaluator_rules"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_evaluator_rules_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))  # the score name written on traces
    scorer: Mapped[str] = mapped_column(String(100))  # a `fmops.scorers` entry point: json, regex, judge, ...
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Which spans it samples; None matches any.
    model: Mapped[str | None] = mapped_column(String(100))
    endpoint: Mapped[str | None] = mapped_column(String(200))
    sample_rate: Mapped[float] = mapped_column(Float, default=1.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
