"""Bodies of the prompt registry routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from fmops.errors import UserError
from fmops.numbers import NumbersOnly
from fmops.prompts.files import parse_documents
from fmops.prompts.schemas import LABEL_PATTERN, PromptSpec
from fmops.server.schemas.base import Input, Output

__all__ = [
    "LabelSet",
    "PromptDiff",
    "PromptPush",
    "PromptPushed",
    "PromptRender",
    "PromptRendered",
    "PromptSummaryPublic",
    "PromptVersionPublic",
]

Version = Annotated[int, Field(ge=1, le=2**31 - 1), NumbersOnly]


class PromptPush(PromptSpec):
    """The spec as JSON, or as a YAML document with `Content-Type: application/yaml`."""

    @model_validator(mode="before")
    @classmethod
    def _yaml(cls, data: Any) -> Any:
        # FastAPI hands over a body that is not JSON as raw bytes: read it as one YAML document.
        # A UserError (not a ValueError) leaves pydantic as it is: a 400 naming the body.
        if isinstance(data, bytes):
            try:
                text = data.decode()
            except UnicodeDecodeError:
                raise UserError("the body must be UTF-8 text", param="body") from None
            documents = parse_documents(text)
            if len(documents) != 1:
                raise UserError(
                    f"the body must hold one prompt, not {len(documents)} YAML documents", param="body"
                )
            return documents[0]
        return data


class PromptVersionPublic(Output):
    name: str
    version: int
    messages: list[dict[str, Any]] = Field(description="Chat messages whose content is a Jinja template")
    variables: list[str] = Field(description="The variables the templates use")
    model: str | None
    params: dict[str, Any]
    output_schema: dict[str, Any] | None
    message: str | None
    author: str | None
    created_at: datetime
    labels: list[str] = Field(description="Labels pointing at this version")


class PromptPushed(PromptVersionPublic):
    created: bool = Field(description="False when the content equals the newest version's (no new version)")


class PromptSummaryPublic(Output):
    name: str
    description: str | None
    latest_version: int
    labels: dict[str, int] = Field(description="Label -> the version it points at")
    created_at: datetime
    updated_at: datetime


class LabelSet(Input):
    version: Version


class PromptRender(Input):
    variables: dict[str, Any] = Field(default_factory=dict, description="Values for the template variables")
    version: Version | None = None
    label: Annotated[str, StringConstraints(pattern=LABEL_PATTERN)] | None = Field(
        None, description="A label, or `latest`; neither version nor label: the newest version"
    )


class PromptRendered(Output):
    name: str
    version: int
    messages: list[dict[str, Any]]
    model: str | None
    params: dict[str, Any]
    output_schema: dict[str, Any] | None


class PromptDiff(Output):
    name: str
    a: str
    b: str
    from_version: int
    to_version: int
    diff: str = Field(description="Unified diff of the two versions' YAML; empty when they are the same")
