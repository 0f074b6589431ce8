"""What a stats query covers: a time range and the spans' dimensions, and what it can be grouped by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement

from fmops.errors import UserError
from fmops.store.models import Span

# A year and a bit: a dashboard asking for more is a mistake, and the query would read every span.
MAX_RANGE = timedelta(days=400)
DEFAULT_RANGE = timedelta(hours=24)


class Dimension(StrEnum):
    """What a breakdown groups by; each is one or two span columns."""

    model = "model"
    provider = "provider"
    endpoint = "endpoint"
    prompt = "prompt"  # prompt name and version together: one row per version
    variant = "variant"
    key = "key"
    user = "user"


DIMENSION_COLUMNS: dict[Dimension, tuple[Any, ...]] = {
    Dimension.model: (Span.model,),
    Dimension.provider: (Span.provider,),
    Dimension.endpoint: (Span.endpoint,),
    Dimension.prompt: (Span.prompt_name, Span.prompt_version),
    Dimension.variant: (Span.variant,),
    Dimension.key: (Span.key_id,),
    Dimension.user: (Span.user,),
}


@dataclass(frozen=True)
class StatsFilters:
    """The spans a stats query reads: started in [start, end), matching every dimension given."""

    start: datetime
    end: datetime
    model: str | None = None
    provider: str | None = None
    endpoint: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    variant: str | None = None
    key_id: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        """Naive times are UTC; an empty or huge range is a mistake worth naming, not an empty chart."""
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            object.__setattr__(self, name, value.replace(tzinfo=UTC) if value.tzinfo is None else value)
        if self.start >= self.end:
            raise UserError(
                f"start ({self.start.isoformat()}) must be before end ({self.end.isoformat()})", param="start"
            )
        if self.end - self.start > MAX_RANGE:
            raise UserError(
                f"the range from start to end is longer than {MAX_RANGE.days} days; ask for a shorter one",
                param="start",
            )

    @classmethod
    def around(
        cls, *, start: datetime | None, end: datetime | None, now: datetime, **dimensions: Any
    ) -> StatsFilters:
        """Defaults a dashboard expects: up to now, and 24 hours back from the end."""
        end = end or now
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return cls(start=start or end - DEFAULT_RANGE, end=end, **dimensions)

    def conditions(self, project_id: str | None) -> list[ColumnElement[bool]]:
        """WHERE clauses over `spans`; `project_id=None` reads every project (the local operator)."""
        where: list[ColumnElement[bool]] = [Span.start_time >= self.start, Span.start_time < self.end]
        if project_id is not None:
            where.append(Span.project_id == project_id)
        equal: list[tuple[Any, Any]] = [
            (Span.model, self.model),
            (Span.provider, self.provider),
            (Span.endpoint, self.endpoint),
            (Span.prompt_name, self.prompt_name),
            (Span.prompt_version, self.prompt_version),
            (Span.variant, self.variant),
            (Span.key_id, self.key_id),
            (Span.user, self.user),
        ]
        where += [column == value for column, value in equal if value is not None]
        return where

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()
