"""What a prompt is made of: the spec a user pushes (YAML file, JSON body) and the views read back.

The spec's shape is checked here (pydantic); what a shape cannot say (templates parse, params are
OpenAI chat parameters, the output schema is valid JSON Schema, the model exists) is checked by
`PromptService.push`, which names the field at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

if TYPE_CHECKING:
    from fmops.prompts.templates import CompiledMessages

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
LABEL_PATTERN = NAME_PATTERN
# A label that reads as a number would be ambiguous wherever a version or a label is accepted
# (`fmops prompts diff support 2 production`), and `latest` always means the newest version.
LATEST = "latest"
_NUMBER = re.compile(r"^[0-9]+$")

PromptName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]
ModelAlias = Annotated[str, StringConstraints(min_length=1, max_length=200)]
MessageRole = Literal["system", "developer", "user", "assistant"]


def label_problem(label: str) -> str | None:
    """Why `label` cannot be set on a version, or None when it can."""
    if not re.match(LABEL_PATTERN, label):
        return f"label {label!r} must match {LABEL_PATTERN} (lower-case letters, digits, '.', '_', '-')"
    if label == LATEST:
        return "'latest' is reserved: it always means the newest version"
    if _NUMBER.match(label):
        return f"label {label!r} is a number, which would read as a version; use a name"
    return None


class MessageTemplate(BaseModel):
    """One chat message whose content is a Jinja template (`{{ question }}`)."""

    model_config = ConfigDict(extra="forbid")

    role: MessageRole
    content: str = Field(max_length=100_000, description="A Jinja template, rendered in a sandbox")


class PromptSpec(BaseModel):
    """A prompt as pushed: one YAML file or JSON body is one prompt."""

    model_config = ConfigDict(extra="forbid")

    name: PromptName = Field(description="Lower-case letters, digits, '.', '_', '-'; at most 100")
    description: str | None = Field(None, max_length=10_000)
    model: ModelAlias | None = Field(None, description="Default model alias; must exist in the catalog")
    params: dict[str, Any] = Field(
        default_factory=dict, description="OpenAI chat parameters, e.g. {temperature: 0.2, max_tokens: 200}"
    )
    messages: list[MessageTemplate] = Field(min_length=1, max_length=100)
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema the model's answer must match (endpoints check it)"
    )
    message: str | None = Field(None, max_length=2_000, description="Why it changed, like a commit message")
    labels: list[LabelName] = Field(
        default_factory=list, max_length=20, description="Labels to point at the pushed version"
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            problem = label_problem(label)
            if problem is not None:
                raise ValueError(problem)
        if len(set(labels)) != len(labels):
            raise ValueError("a label is listed twice")
        return labels

    def content(self) -> dict[str, Any]:
        """What a version is: equal content hashes equal, so a re-push is a no-op."""
        return {
            "messages": [m.model_dump() for m in self.messages],
            "model": self.model,
            "params": self.params,
            "output_schema": self.output_schema,
        }


@dataclass(frozen=True)
class PromptVersionView:
    """One immutable version of a prompt, with the labels pointing at it when it was read."""

    name: str
    version: int
    messages: list[dict[str, Any]]
    variables: list[str]
    model: str | None
    params: dict[str, Any]
    output_schema: dict[str, Any] | None
    message: str | None
    author: str | None
    created_at: datetime
    labels: list[str] = field(default_factory=list)

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The messages with their templates rendered; a missing variable is a 400 naming it."""
        from fmops.prompts.templates import render_messages  # Jinja loads only when a prompt renders

        return render_messages(self.messages, variables, self._compiled)

    @cached_property
    def _compiled(self) -> CompiledMessages:
        """Its templates compiled, once per view (an endpoint keeps its views until the registry
        changes): each render then skips looking them up."""
        from fmops.prompts.templates import compile_messages

        return compile_messages(self.messages)


@dataclass(frozen=True)
class PromptSummary:
    """A prompt as the registry lists it: its newest version and where its labels point."""

    name: str
    description: str | None
    latest_version: int
    labels: dict[str, int]
    created_at: datetime
    updated_at: datetime
