"""What an assistant is made of, as published (YAML, JSON, a form) and as shown.

```yaml
name: Support helper
endpoint: support-bot
description: Answers questions about your orders and returns.
starters: ["Where is my order?", "How do I return an item?"]
roles: [consumer]        # each role covers those above it: consumer means everyone in the project
users: [alice]           # and/or people by name
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from fmops.auth import Role
from fmops.auth.audience import SOMEONE_SCHEMA
from fmops.endpoints.schemas import validated

NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,98}[A-Za-z0-9._-])?$"
DESCRIPTION_MAX = 500
STARTERS_MAX = 6
STARTER_MAX_CHARS = 200
AUDIENCE_MAX = 100
Change = Literal["created", "updated", "unchanged"]  # what publishing did

AssistantName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Starter = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=STARTER_MAX_CHARS)]
UserName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AssistantFields(BaseModel):
    """What an assistant is, its name aside: the endpoint it calls, how it reads, who may use it."""

    # At least one role or user: the schema says it too (the validator below words the 400).
    model_config = ConfigDict(extra="forbid", json_schema_extra=SOMEONE_SCHEMA)

    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The endpoint it calls: its conversations are that endpoint's traces"
    )
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_MAX)] = ""
    starters: list[Starter] = Field(
        default_factory=list,
        max_length=STARTERS_MAX,
        description="Short prompts shown as chips on a new conversation",
    )
    roles: list[Role] = Field(
        default_factory=list,
        max_length=len(Role),
        description="Roles that may use it; a role covers those above it (consumer: everyone)",
    )
    users: list[UserName] = Field(
        default_factory=list, max_length=AUDIENCE_MAX, description="People (by user name) who may use it"
    )

    @field_validator("starters", "users")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: list[Role]) -> list[Role]:
        return sorted(set(value), key=lambda r: r.rank)

    @model_validator(mode="after")
    def _audience(self) -> AssistantFields:
        if not self.roles and not self.users:
            raise ValueError(
                "say who may use it: roles (consumer: everyone in the project) and/or users (by name)"
            )
        return self

    def named(self, name: str) -> AssistantSpec:
        """The spec under `name`; a 400 when the name is not one."""
        return validated(AssistantSpec, {"name": name, **self.model_dump()})


class AssistantSpec(AssistantFields):
    """An assistant to publish: its name, the endpoint it calls, how it reads, and who may use it."""

    name: AssistantName = Field(description="What consumers see in the chat's picker")


@dataclass(frozen=True, slots=True)
class AssistantView:
    name: str
    endpoint: str
    description: str
    starters: tuple[str, ...]
    roles: tuple[Role, ...]
    users: tuple[str, ...]
    created_by: str | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime

    def spec(self) -> AssistantSpec:
        return AssistantSpec(
            name=self.name,
            endpoint=self.endpoint,
            description=self.description,
            starters=list(self.starters),
            roles=list(self.roles),
            users=list(self.users),
        )

    def public(self, *, audience: bool = True) -> dict[str, Any]:
        """As the API and `--json` show it; the audience (who else may use it) for engineers only."""
        shown: dict[str, Any] = {
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "starters": list(self.starters),
        }
        if audience:
            shown |= {
                "roles": [r.value for r in self.roles],
                "users": list(self.users),
                "created_by": self.created_by,
                "updated_by": self.updated_by,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
            }
        return shown
