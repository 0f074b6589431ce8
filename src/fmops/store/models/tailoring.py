"""What a consumer tailors the chat with: their custom instructions and their saved prompts (issue 18)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class CustomInstructions(Base):
    """One user's custom instructions in one project, sent as a marked system message."""

    __tablename__ = "custom_instructions"
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_custom_instructions_project_user"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    about: Mapped[str] = mapped_column(Text, default="")  # what the model should know about the user
    style: Mapped[str] = mapped_column(Text, default="")  # how the model should answer
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SavedPrompt(Base):
    """A user's saved prompt: a sandboxed template with variables, called in the chat as `/name`."""

    __tablename__ = "saved_prompts"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id", "name", name="uq_saved_prompts_project_user_name"),
        Index("ix_saved_prompts_shared", "project_id", "shared"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(200))  # the user's name, kept when it is promoted
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    template: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[str]] = mapped_column(JSONType, default=list)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)  # others in the project may use it
    # The registry prompt and version an engineer promoted it to, last.
    promoted_to: Mapped[str | None] = mapped_column(String(100))
    promoted_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConversationTailoring(Base):
    """A conversation's switch for its owner's custom instructions (no row: on)."""

    __tablename__ = "conversation_tailoring"

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    instructions: Mapped[bool] = mapped_column(Boolean, default=True)
