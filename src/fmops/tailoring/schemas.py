"""The shapes of tailoring: what a person sends (pydantic, shared by the API and the web UI) and the
views read back. The limits are checked by the service, which says what to fix; the bodies only cap
what is read at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

INSTRUCTIONS_MAX = 1_500  # characters of each of the two fields, as ChatGPT's custom instructions
PROMPT_MAX = 8_000  # characters of a saved prompt's template
DESCRIPTION_MAX = 500
VALUE_MAX = 5_000  # characters of one variable's value when a saved prompt is filled
PROMPTS_MAX = 200  # saved prompts one user keeps in one project
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # what follows the `/` in the chat box
REGISTRY_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"  # the prompt registry's names

PromptName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class InstructionsSet(BaseModel):
    """Custom instructions: what the model should know about you, and how it should answer."""

    model_config = ConfigDict(extra="forbid")

    # Twice the limit is read, so an over-long text gets the service's message with its length.
    about: str = Field(
        "", max_length=2 * INSTRUCTIONS_MAX, description="What the model should know about you"
    )
    style: str = Field("", max_length=2 * INSTRUCTIONS_MAX, description="How the model should answer")


class SavedPromptSet(BaseModel):
    """A saved prompt: a template with `{{ variables }}`, rendered in the prompt registry's sandbox."""

    model_config = ConfigDict(extra="forbid")

    name: PromptName = Field(description="Called as /name in the chat: lower-case letters, digits, '_', '-'")
    template: str = Field(
        max_length=2 * PROMPT_MAX,
        pattern=r"\S",  # some text, not only spaces (the schema says what the service refuses)
        description="A Jinja template, e.g. 'Summarise {{ text }}'",
    )
    description: str | None = Field(None, max_length=2 * DESCRIPTION_MAX)
    shared: bool = Field(False, description="Others in the project may see and use it (read-only)")


class PromptFill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, str] = Field(default_factory=dict, max_length=50)


class SharedPromote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=REGISTRY_NAME_PATTERN)] | None = Field(
        None,
        description="The registry prompt to create or add a version to (default: the saved prompt's name)",
    )


class ConversationSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: bool = Field(description="Whether this conversation sends your custom instructions")


@dataclass(frozen=True, slots=True)
class InstructionsView:
    about: str
    style: str
    updated_at: datetime | None  # None: never set


@dataclass(frozen=True, slots=True)
class SavedPromptView:
    id: str
    name: str
    description: str | None
    template: str
    variables: list[str]
    author: str
    mine: bool  # the caller's own (editable); otherwise another's shared prompt (read-only)
    shared: bool
    promoted_to: str | None
    promoted_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Promoted:
    """A shared prompt pushed into the prompt registry."""

    prompt: str
    version: int
    created: bool  # False: the registry's newest version already had this content
    author: str
