"""Bodies of the assistants routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from fmops.assistants.schemas import AssistantFields, Change
from fmops.auth import Role
from fmops.server.schemas.base import Output

__all__ = ["AssistantPublic", "AssistantPublish", "AssistantPublished", "AssistantUsagePublic"]


class AssistantPublish(AssistantFields):
    """What `PUT /api/assistants/{name}` publishes under the path's name."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class AssistantPublic(Output):
    """An assistant; who may use it (roles, users) and its history are shown to engineers only."""

    name: str
    endpoint: str = Field(description="The endpoint it calls")
    description: str
    starters: list[str]
    roles: list[Role] | None = None
    users: list[str] | None = None
    created_by: str | None = None
    updated_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AssistantPublished(Output):
    change: Change = Field(description="created, updated, or unchanged (it was already so)")
    assistant: AssistantPublic


class ScoreMeanPublic(Output):
    name: str
    mean: float
    n: int


class AssistantUsagePublic(Output):
    assistant: str
    endpoint: str
    since: datetime
    until: datetime
    conversations: int = Field(description="Conversations with an answer in the window")
    answers: int = Field(description="The endpoint's calls from those conversations")
    users: int
    errors: int
    thumbs_up: int
    thumbs_down: int
    rated_share: float | None = Field(description="Share of answers given a thumb up or down")
    up_share: float | None = Field(description="Of the thumbs, the share up")
    scores: list[ScoreMeanPublic] = Field(description="Evaluators' mean scores of the answers, by name")
