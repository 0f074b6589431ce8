"""Bodies of the route that makes a dataset version from traces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fmops.server.schemas.base import Input, Output

DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class FromTracesCreate(Input):
    name: str = Field(
        min_length=1, max_length=100, pattern=DATASET_NAME, description="Dataset to add a version to"
    )
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Trace filters named as GET /api/traces's query (endpoint, model, prompt_name, "
        "prompt_version, variant, start, end, user, feedback, score_name, min_score, ...)",
    )
    corrected_only: bool = Field(
        False, description="Only traces a person corrected (the correction is the answer)"
    )
    preference: bool = Field(False, description="Preference pairs from feedback instead of chat examples")
    append: bool = Field(False, description="The new version is the latest version plus these records")


class DatasetVersionPublic(Output):
    id: str
    name: str
    version: int
    ref: str
    kind: str
    rows: int
    content_hash: str
    parent_id: str | None
    source: dict[str, Any]
    counts: dict[str, Any]
    created_at: datetime
