"""Evaluation: suites (cases × targets × scorers), their runs, each run's per-case results, and the
response cache that makes a re-run of the same case, target and parameters cost nothing.

A result row is written as soon as its case is scored (in small batches); a resumed run skips the
(case, target) pairs it finds here, so a crash loses at most the last batch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class EvalSuite(Base):
    """The newest definition of a suite by name (a suite's source of truth is its YAML, in git)."""

    __tablename__ = "eval_suites"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_eval_suites_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvalRun(Base):
    """One run of a suite: what it resolved to (lineage: dataset version, prompt versions), its job,
    and its summary (aggregates with confidence intervals) once finished."""

    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_project_id", "project_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    suite_id: Mapped[str | None] = mapped_column(String(32))
    suite_name: Mapped[str] = mapped_column(String(100))
    # The suite as it ran: cases' dataset version id and hash, each target's prompt version.
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    job_id: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    cases: Mapped[int] = mapped_column(Integer, default=0)
    targets: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_by_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EvalResult(Base):
    """One case × one target: the output, each scorer's verdict and the weighted score. `status` is
    "ok" or "error" (the target failed: counted apart from wrong answers, never scored 0)."""

    __tablename__ = "eval_results"
    __table_args__ = (
        UniqueConstraint("run_id", "case_index", "target_index", name="uq_eval_results_run_case_target"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("eval_runs.id", ondelete="CASCADE"))
    case_index: Mapped[int] = mapped_column(Integer)
    target_index: Mapped[int] = mapped_column(Integer)
    case_key: Mapped[str] = mapped_column(String(32))  # hash of (input, expected): pairs runs' cases
    input: Mapped[Any] = mapped_column(JSONType, nullable=True)
    expected: Mapped[Any] = mapped_column(JSONType, nullable=True)
    output: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    error: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    score: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvalCache(Base):
    """A target's answer to one exact request (sha256 of the project and the canonical body).

    Pruned oldest first (`fmops.evals.cache`): by age and to a most number of entries."""

    __tablename__ = "eval_cache"
    __table_args__ = (Index("ix_eval_cache_created_at", "created_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(32))
    response: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
