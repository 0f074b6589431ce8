"""Endpoints: what consumers call as `model="<name>"`, and the state every replica watches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_endpoints_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    # The whole deployment as validated JSON (endpoints.schemas.EndpointConfig): prompt label,
    # model, params, guardrails, cache, fallbacks, variants, stickiness.
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # When the current set of variants started serving: experiment results count from here.
    experiment_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EndpointEvent(Base):
    """What happened to an endpoint: created, changed, experiment started, variant promoted."""

    __tablename__ = "endpoint_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegistryGeneration(Base):
    """One counter per project, bumped by every change to its prompts' labels and its endpoints.

    Each replica caches resolved endpoints and checks this single row per call, so a moved label
    serves at once everywhere (API, CLI and other servers share the database, not memory).
    """

    __tablename__ = "registry_generations"

    project_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
