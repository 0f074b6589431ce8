"""Fine-tunes: the lineage of every model a fine-tuning job registered (base, data, config, metrics)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, utcnow


class Finetune(Base):
    """One row per succeeded fine-tuning job, written with the model it registered."""

    __tablename__ = "finetunes"
    __table_args__ = (Index("ix_finetunes_project_created", "project_id", "created_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # The model keeps its lineage while it exists; removing the model leaves the record of the run.
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"), index=True)
    model_alias: Mapped[str] = mapped_column(String(100))
    base: Mapped[str] = mapped_column(String(500))
    method: Mapped[str] = mapped_column(String(20))
    dataset_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    dataset_ref: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # adapter, GGUF paths
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
