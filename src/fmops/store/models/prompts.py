"""Prompts: named templates with immutable numbered versions and movable labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_prompts_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptVersion(Base):
    """Immutable once written: a change is a new version."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version", name="uq_prompt_versions_prompt_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prompt_id: Mapped[str] = mapped_column(String(32), ForeignKey("prompts.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # [{"role": "system", "content": "<jinja template>"}, ...]
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    variables: Mapped[list[str]] = mapped_column(JSONType, default=list)  # found in the templates
    model: Mapped[str | None] = mapped_column(String(200))  # default model alias
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # temperature, max_tokens, ...
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the content: a re-push is a no-op
    message: Mapped[str | None] = mapped_column(Text)  # why it changed, like a commit message
    author: Mapped[str | None] = mapped_column(String(200))  # user name or key name
    author_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptLabel(Base):
    """A movable name (`production`, `staging`, ...) for one version of a prompt."""

    __tablename__ = "prompt_labels"

    prompt_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
