"""Guardrail policies: a check, where it runs and what a hit does, on a project, a model or an endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class GuardrailPolicy(Base):
    __tablename__ = "guardrail_policies"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "scope", "target", "name", name="uq_guardrail_policies_project_scope_target_name"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))  # project | model | endpoint
    # The model alias or endpoint name it is attached to; "" for the project's. A name, not a key:
    # a policy outlives a deleted endpoint and applies again to one re-created under its name.
    target: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)  # guardrails.policy.PolicySpec, as JSON
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
