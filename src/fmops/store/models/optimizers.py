"""Prompt optimisation (issue 20): a run proposes candidate versions of a prompt and scores each on a
suite's cases through the gateway; the best, once proven on held-out cases, is pushed as a version.

A run's `definition` is what it resolved (lineage): the suite, its dataset version and hash, the
start version, the seeded split of case indices, the budget and the optimizer's settings. Its
candidates are kept whether or not they won, with their per-case scores, so the console can show
the search and a Pareto set can be rebuilt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class PromptOptimization(Base):
    """One optimisation run of a prompt version against a suite, done by one optimizer plugin."""

    __tablename__ = "prompt_optimizations"
    __table_args__ = (Index("ix_prompt_optimizations_project_id", "project_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    prompt_name: Mapped[str] = mapped_column(String(100))
    start_version: Mapped[int] = mapped_column(Integer)
    optimizer: Mapped[str] = mapped_column(String(100))
    suite_name: Mapped[str] = mapped_column(String(100))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    budget: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|...
    calls: Mapped[int] = mapped_column(Integer, default=0)  # gateway calls made (target + optimizer)
    dropped: Mapped[int] = mapped_column(Integer, default=0)  # proposals unusable after retries
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # winner, held-out test, message
    pushed_version: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PromptCandidate(Base):
    """One candidate of a run: its messages, what changed from its parent, and its scores (the mean
    and each case's, on the optimisation part; on the held-out part once measured there)."""

    __tablename__ = "prompt_candidates"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_prompt_candidates_run_seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("prompt_optimizations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # 0: the start version
    parent_seq: Mapped[int | None] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(Text)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    opt_score: Mapped[float | None] = mapped_column(Float)
    opt_scores: Mapped[dict[str, Any]] = mapped_column(JSONType)  # case index -> score
    heldout_score: Mapped[float | None] = mapped_column(Float)
    heldout_scores: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
