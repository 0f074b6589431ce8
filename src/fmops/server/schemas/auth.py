"""Bodies of the projects, users and keys routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints

from fmops.auth import Role
from fmops.auth.limits import UNSET, LimitChanges
from fmops.numbers import NumbersOnly
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
    retention_days: Annotated[int, Field(ge=1, le=36_500), NumbersOnly] | None = None


class LimitsPublic(Output):
    """Rate limits and budget; null means no limit."""

    rpm_limit: int | None = Field(None, description="Requests per minute")
    tpm_limit: int | None = Field(None, description="Tokens (input + output) per minute")
    budget: float | None = Field(None, description="Spend allowed per period, in the models' price currency")
    budget_period: Literal["day", "month", "total"] = Field("month", description="When spend resets (UTC)")


class LimitsUpdate(Input):
    """Only the fields sent change; null removes that limit."""

    rpm_limit: Annotated[int, Field(ge=1, le=1_000_000_000), NumbersOnly] | None = None
    tpm_limit: Annotated[int, Field(ge=1, le=1_000_000_000), NumbersOnly] | None = None
    budget: Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False), NumbersOnly] | None = None
    budget_period: Literal["day", "month", "total"] = "month"

    def changes(self) -> LimitChanges:
        sent = self.model_fields_set
        return LimitChanges(
            rpm=self.rpm_limit if "rpm_limit" in sent else UNSET,
            tpm=self.tpm_limit if "tpm_limit" in sent else UNSET,
            budget=self.budget if "budget" in sent else UNSET,
            budget_period=self.budget_period if "budget_period" in sent else UNSET,
        )


class ProjectPublic(LimitsPublic):
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
    disabled: StrictBool | None = None


class PasswordSet(Input):
    password: str = Field(min_length=1, max_length=1024, description="8 to 1024 characters")


class UserPublic(Output):
    id: str
    name: str
    email: str | None
    disabled: bool
    role: Role
    created_at: datetime


class KeyCreate(Input):
    name: str = Field(min_length=1, max_length=100)
    role: Role | None = Field(None, description="Defaults to the user's role in the project, capped by yours")
    project: Name | None = Field(None, description="Project name; defaults to the creating key's project")
    user: Name | None = Field(None, description="User name; defaults to the creating key's user")
    expires_at: datetime | None = None


class KeyPublic(LimitsPublic):
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
