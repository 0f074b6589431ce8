"""`NumbersOnly`: a number field of a request body takes JSON numbers, never `true` or `"7"`.

Pydantic's lax mode would read `true` as 1 and `"7"` as 7; a weight, version, rate, threshold or
score sent as text or a boolean is a mistake worth a 400. Put it after the field's constraints
(`Annotated[int, Field(ge=1), NumbersOnly]`) so they stay in the JSON schema.
"""

from __future__ import annotations

from pydantic import BeforeValidator


def _json_number(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


NumbersOnly = BeforeValidator(_json_number)
