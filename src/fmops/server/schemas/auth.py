"""Bodies of the projects, users and keys routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from fmops.auth import Role
from fmops.server.schemas.base import Input, Output

Name = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
]


class Me(Output):
    key_id: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    role: Role


class ProjectCreate(Input):
    name: Name


class ProjectUpdate(Input):
    retention_days: int | None = Field(None, ge=1, le=36_500)


class ProjectPublic(Output):
    id: str
    name: str
    retention_days: int | None
    created_at: datetime
    role: Role | None = None


class UserCreate(Input):
    name: Name
    email: str | None = Field(None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role = Role.consumer


class UserUpdate(Input):
    role: Role | None = None
    disabled: bool | None = None


class UserPublic(Output):
    id: str
    name: str
    email: str | None
    disabled: bool
    role: Role
    created_at: datetime


class KeyCreate(Input):
    name: str = Field(min_length=1, max_length=100)
    role: Role | None = Field(None, description="Defaults to the creating key's role")
    project: Name | None = Field(None, description="Project name; defaults to the creating key's project")
    user: Name | None = Field(None, description="User name; defaults to the creating key's user")
    expires_at: datetime | None = None


class KeyPublic(Output):
    id: str
    name: str
    prefix: str
    role: Role
    user: str
    project: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The key itself; shown this once and never again")
