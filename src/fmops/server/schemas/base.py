"""Base classes for request and response bodies."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Input(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 400 that names it instead of being ignored."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Output, Generic[T]):
    data: list[T]
    next_cursor: str | None = None
