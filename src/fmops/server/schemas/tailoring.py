"""Bodies of the tailoring routes: a user's custom instructions and saved prompts (issue 18)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fmops.server.schemas.base import Input, Output
from fmops.tailoring.schemas import (
    ConversationSwitch,
    InstructionsSet,
    PromptFill,
    SavedPromptSet,
    SharedPromote,
)

__all__ = [
    "ConversationSwitch",
    "Filled",
    "InstructionsPublic",
    "InstructionsSet",
    "PromotedPublic",
    "PromptFill",
    "SavedPromptPublic",
    "SavedPromptSet",
    "ShareSet",
    "SharedPromote",
]


class InstructionsPublic(Output):
    about: str
    style: str
    updated_at: datetime | None = Field(description="When they were last saved; null: never set")


class SavedPromptPublic(Output):
    id: str
    name: str
    description: str | None
    template: str
    variables: list[str]
    author: str
    mine: bool = Field(description="The caller's own; otherwise another's shared prompt (read-only)")
    shared: bool
    promoted_to: str | None
    promoted_version: int | None
    created_at: datetime
    updated_at: datetime


class Filled(Output):
    name: str
    text: str = Field(description="The prompt rendered with the variables: what the chat box then holds")


class PromotedPublic(Output):
    prompt: str
    version: int
    created: bool = Field(description="False: the registry's newest version already had this content")
    author: str


class ShareSet(Input):
    shared: bool = Field(description="Whether others in the project may see and use it")
