"""Bodies of the jobs routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fmops.jobs import JobStatus
from fmops.server.schemas.base import Input, Output


class JobCreate(Input):
    kind: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class JobPublic(Output):
    id: str
    kind: str
    status: JobStatus
    progress: float
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


class JobLogLine(Output):
    id: int
    ts: datetime
    level: str
    line: str


class JobKindPublic(Output):
    name: str
    description: str
    min_role: str
    params_schema: dict[str, Any] | None
