"""The model catalog: what a project can call, by alias, and how to reach it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class CatalogModel(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project_id", "alias", name="uq_models_project_alias"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50))
    provider_model: Mapped[str] = mapped_column(String(500))
    base_url: Mapped[str | None] = mapped_column(String(500))
    # Provider credentials, encrypted with the server's secret key (never hashed: they must be sent).
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    context_window: Mapped[int | None] = mapped_column(Integer)
    input_price: Mapped[float] = mapped_column(Float, default=0.0)  # currency per 1M input tokens
    output_price: Mapped[float] = mapped_column(Float, default=0.0)  # currency per 1M output tokens
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    fallbacks: Mapped[list[str]] = mapped_column(JSONType, default=list)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=60.0)
    max_retries: Mapped[int] = mapped_column(Integer, default=2)
    cache_ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    license: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
