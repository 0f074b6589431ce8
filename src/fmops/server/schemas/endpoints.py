"""Bodies of the endpoints routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from fmops.endpoints.schemas import EndpointConfig, EndpointSpec, EndpointUpdate, VariantName, Weight
from fmops.server.schemas.base import Input, Output

__all__ = ["EndpointCreate", "EndpointEventPublic", "EndpointPatch", "EndpointPublic", "WeightsUpdate"]

EndpointCreate = EndpointSpec
EndpointPatch = EndpointUpdate


class EndpointPublic(EndpointConfig):
    """An endpoint: its spec, whether it serves, and since when its current experiment runs."""

    model_config = ConfigDict(extra="ignore")

    name: str
    description: str | None
    enabled: bool
    experiment_started_at: datetime | None = Field(
        description="When the current variants started serving (experiment results count from here)"
    )
    created_at: datetime
    updated_at: datetime


class WeightsUpdate(Input):
    weights: Annotated[dict[VariantName, Weight], Field(min_length=1, max_length=20)] = Field(
        description="Variant name -> new weight; variants left out keep theirs"
    )


class EndpointEventPublic(Output):
    kind: str = Field(description="created, updated, weights, experiment_started, promoted, deleted")
    detail: dict[str, Any]
    actor: str | None
    created_at: datetime
