"""A policy: one guardrail, where it runs, and what a hit does. Attached to the project (every call), a
model (every call that reaches it, endpoint calls included) or an endpoint.

    name: no-pii            # unique within its scope; named in the caller's error and on the trace
    guardrail: pii          # a registered guardrail (GET /api/guardrails)
    on: input               # input | output | both
    action: redact          # block | redact | mask | flag | retry (output only)
    config: {types: [email, phone]}
    on_error: closed        # the check cannot decide (a judge timed out): closed blocks, open allows

`PolicySpec` is what users write (YAML, API, CLI) and what the store keeps; `Policy` is one resolved for
serving: its guardrail built once from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fmops.guardrails.base import Guardrail, Stage

PolicyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


class Action(StrEnum):
    block = "block"  # the caller gets an OpenAI-style error naming the policy
    redact = "redact"  # the found spans become "[EMAIL]"-style placeholders before the model sees them
    mask = "mask"  # the found spans become asterisks of the same length
    flag = "flag"  # allowed; the trace is marked
    retry = "retry"  # output only: ask once more with the reason, then block


class Scope(StrEnum):
    project = "project"
    model = "model"
    endpoint = "endpoint"


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)

    name: PolicyName
    guardrail: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="A registered guardrail (GET /api/guardrails)"
    )
    on: Literal["input", "output", "both"] = Field("input", description="What it checks")
    action: Action = Field(Action.block, description="What a hit does")
    config: dict[str, Any] = Field(default_factory=dict, description="The guardrail's config")
    on_error: Literal["open", "closed"] = Field(
        "closed", description="When the check cannot decide: closed blocks, open lets the call through"
    )
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; the spec means the word.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @property
    def stages(self) -> frozenset[Stage]:
        if self.on == "both":
            return frozenset({Stage.input, Stage.output})
        return frozenset({Stage(self.on)})


@dataclass(frozen=True)
class Policy:
    """A policy ready to run: `scope` and `target` say where it is attached (target: the model alias or
    endpoint name, "" for the project)."""

    name: str
    scope: Scope
    target: str
    stages: frozenset[Stage]
    action: Action
    guardrail: Guardrail[Any]
    fail_open: bool = False

    @cached_property  # read several times per check on every call: made once per policy
    def label(self) -> str:
        """How errors and spans name it: `no-pii` for the project's, `endpoint:triage/no-pii` otherwise."""
        return self.name if self.scope is Scope.project else f"{self.scope}:{self.target}/{self.name}"
