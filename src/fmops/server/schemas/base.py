"""Base classes for request and response bodies."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

T = TypeVar("T")


def _json_number(value: object) -> object:
    """Lax validation would read `true` as 1 and "7" as 7; a JSON integer field takes numbers only."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# For integer fields of request bodies: 7 or 7.0, never true or "7". Put it after the field's
# constraints (`Annotated[int, Field(ge=1), NumbersOnly]`) so they stay in the JSON schema.
NumbersOnly = BeforeValidator(_json_number)


class Input(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 400 that names it instead of being ignored."""

    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Output, Generic[T]):
    data: list[T]
    next_cursor: str | None = None
