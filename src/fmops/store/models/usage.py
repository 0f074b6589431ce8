"""Spend per key and project per period, kept in SQL so budgets survive restarts."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base


class Spend(Base):
    __tablename__ = "spend"

    # scope is "key:<id>" or "project:<id>"; period is e.g. "2026-11" (month), "2026-11-26" (day), "total".
    scope: Mapped[str] = mapped_column(String(50), primary_key=True)
    period: Mapped[str] = mapped_column(String(20), primary_key=True)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
