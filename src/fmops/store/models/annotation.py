"""Annotation queues: traces sampled for people to review, their copied examples and each decision.

An item copies the span's input and output when the queue is made, so retention deleting the spans
later takes nothing from a queue (or from the dataset a queue exports).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class AnnotationQueue(Base):
    __tablename__ = "annotation_queues"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_annotation_queues_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    filter: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # TraceFilters fields, as JSON
    sampling_rate: Mapped[float] = mapped_column(Float)
    # [{"name": "category", "values": ["billing", "shipping"]}, ...]
    label_schema: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # people who decide each item
    annotators: Mapped[list[str]] = mapped_column(JSONType, default=list)  # user names; [] = every annotator
    dataset: Mapped[str] = mapped_column(String(100))  # the dataset its export makes a version of
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnnotationItem(Base):
    __tablename__ = "annotation_items"
    __table_args__ = (
        UniqueConstraint("queue_id", "trace_id", name="uq_annotation_items_queue_trace"),
        Index("ix_annotation_items_queue_position", "queue_id", "position"),
        Index("ix_annotation_items_project_trace", "project_id", "trace_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    queue_id: Mapped[str] = mapped_column(ForeignKey("annotation_queues.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)  # order people see items in
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(32))
    input: Mapped[Any] = mapped_column(JSONType, nullable=True)  # copied from the span
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnnotationDecision(Base):
    """One person's decision on one item: accept, correct or skip, with the labels they gave."""

    __tablename__ = "annotation_decisions"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_annotation_decisions_item_user"),
        Index("ix_annotation_decisions_queue", "queue_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(ForeignKey("annotation_items.id", ondelete="CASCADE"))
    queue_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    user_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(10))  # accept, correct, skip
    corrected_output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
