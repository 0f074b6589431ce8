"""Bodies of the guardrails and policies routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fmops.guardrails.policy import Action, PolicySpec, Scope
from fmops.guardrails.schemas import AttachedPolicy, Change
from fmops.server.schemas.base import Input, Output

__all__ = ["GuardrailPublic", "PolicyApplied", "PolicyCreate", "PolicyList", "PolicyPublic", "PolicyReplace"]

PolicyCreate = AttachedPolicy
PolicyReplace = PolicySpec


class PolicyList(Input):
    """What `fmops guardrails apply -f` sends: a policies file's mapping."""

    policies: list[AttachedPolicy] = Field(min_length=1, max_length=1000)


class GuardrailPublic(Output):
    name: str = Field(description="What a policy's `guardrail` names")
    description: str
    stages: list[Literal["input", "output"]] = Field(description="Where it can run: a policy's `on`")
    spans: bool = Field(description="It finds spans of text, so a policy may `redact` or `mask` them")
    slow: bool = Field(description="It computes for milliseconds or more (a local encoder)")
    needs_model: bool = Field(description="It calls a model through the gateway (a judge)")
    config_schema: dict[str, Any] = Field(description="JSON schema of a policy's `config` for it")


class PolicyPublic(Output):
    """A policy, where it is attached and who last changed it."""

    name: str
    scope: Scope
    target: str = Field(description="The model's alias or the endpoint's name; '' for the project")
    label: str = Field(description="How blocked callers' errors and trace spans name it")
    guardrail: str
    on: Literal["input", "output", "both"]
    action: Action
    config: dict[str, Any]
    on_error: Literal["open", "closed"]
    enabled: bool
    created_by: str | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime


class PolicyApplied(Output):
    change: Change = Field(description="created, updated, or unchanged (it was already so)")
    policy: PolicyPublic
