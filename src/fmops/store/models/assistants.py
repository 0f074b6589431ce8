"""Assistants: endpoints an engineer publishes to the chat, with a name, a description, starter
prompts and an audience (roles and/or users)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class Assistant(Base):
    __tablename__ = "assistants"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_assistants_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The endpoint it calls, by name (as callers send it in `model`): its conversations are that
    # endpoint's traffic. A name, not a key: an endpoint re-created under the name serves it again.
    endpoint: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starters: Mapped[list[str]] = mapped_column(JSONType, default=list)
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)  # each role and those above it
    users: Mapped[list[str]] = mapped_column(JSONType, default=list)  # user names
    created_by: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssistantConversation(Base):
    """Which assistant a chat conversation talks to (the conversation's `endpoint` is the one called)."""

    __tablename__ = "assistant_conversations"
    __table_args__ = (Index("ix_assistant_conversations_project_assistant", "project_id", "assistant"),)

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(32))
    # By name: the conversations outlive an unpublished assistant, and count again if it comes back.
    assistant: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
