"""Spans: one row per model call or step, following the OpenTelemetry GenAI conventions.

The gateway writes one root span per call. The columns are what dashboards filter and group by;
everything else rides in `attributes` (gen_ai.* and custom keys). A span's tags (Langfuse's trace
tags) are rows of `span_tags`, written in the span's transaction, so a tag filter is an index read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime


class Span(Base):
    __tablename__ = "spans"
    __table_args__ = (
        # Span ids are the caller's (OTLP, traceparent): unique within a project, not across them.
        PrimaryKeyConstraint("project_id", "span_id"),
        Index("ix_spans_project_start", "project_id", "start_time"),
        Index("ix_spans_trace", "trace_id"),
        Index("ix_spans_project_model_start", "project_id", "model", "start_time"),
        Index("ix_spans_project_status_start", "project_id", "status", "start_time"),
        Index("ix_spans_project_user_start", "project_id", "user", "start_time"),
        # A session's calls (the chat's conversations): few spans, found without reading the project.
        Index("ix_spans_project_session_start", "project_id", "session_id", "start_time"),
        Index("ix_spans_project_endpoint_start", "project_id", "endpoint", "start_time"),
        Index("ix_spans_project_prompt_start", "project_id", "prompt_name", "prompt_version", "start_time"),
    )

    span_id: Mapped[str] = mapped_column(String(32))
    trace_id: Mapped[str] = mapped_column(String(32))
    parent_span_id: Mapped[str | None] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="llm")  # llm, embedding, chain, tool, retrieval
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="ok")  # ok, error
    status_message: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(100))  # alias the caller asked for
    provider: Mapped[str | None] = mapped_column(String(50))
    response_model: Mapped[str | None] = mapped_column(String(200))  # what actually answered
    key_id: Mapped[str | None] = mapped_column(String(32))
    user: Mapped[str | None] = mapped_column(String(200))  # end user, from the request's `user`
    session_id: Mapped[str | None] = mapped_column(String(200))
    # What served the call when it came through an endpoint (prompt registry, A/B variants).
    endpoint: Mapped[str | None] = mapped_column(String(200))
    prompt_name: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[int | None] = mapped_column(Integer)
    variant: Mapped[str | None] = mapped_column(String(100))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    input: Mapped[Any] = mapped_column(JSONType)
    output: Mapped[Any] = mapped_column(JSONType)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class SpanTag(Base):
    """One tag of one span. `start_time` is the span's, copied so that a tag filter reads its spans
    newest first straight from (project, tag, start_time) without sorting every tagged span."""

    __tablename__ = "span_tags"
    __table_args__ = (
        PrimaryKeyConstraint("project_id", "span_id", "tag"),
        Index("ix_span_tags_project_tag_start", "project_id", "tag", "start_time", "span_id"),
    )

    project_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(32))
    tag: Mapped[str] = mapped_column(String(64))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
