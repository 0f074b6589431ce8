"""Policies as the API, the CLI and `fmops guardrails apply` take them: a `PolicySpec` and where it
is attached.

```yaml
# policies.yaml: a list (or `policies:` holding one)
- name: no-pii                 # the project's: every call
  guardrail: pii
  on: input
  action: redact
- name: no-leak
  scope: endpoint              # project (default) | model | endpoint
  target: triage               # the endpoint's name or the model's alias; none for the project
  guardrail: system_prompt_leak
  on: output
  action: block
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from fmops.endpoints.schemas import GuardrailSpec
from fmops.errors import UserError
from fmops.guardrails.base import Stage
from fmops.guardrails.policy import Action, Policy, PolicySpec, Scope

# A placeholder for the project's empty target in paths (/api/policies/project/_/NAME); no model
# alias or endpoint name can be "_" (both start with a letter or digit).
NO_TARGET = "_"
# A model alias or an endpoint name (or nothing, or "_", for the project).
TARGET_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._:/-]*|_)?$"
Change = Literal["created", "updated", "unchanged"]


class AttachedPolicy(PolicySpec):
    """A policy and what it is attached to."""

    scope: Scope = Field(
        Scope.project, description="project: every call; model or endpoint: the calls to `target`"
    )
    target: str = Field(
        "",
        max_length=200,
        pattern=TARGET_PATTERN,
        validate_default=True,  # a model policy with no target is refused, not stored
        description="The model's alias or the endpoint's name; '' (or _) for the project",
    )

    @field_validator("target")
    @classmethod
    def _target_fits_scope(cls, target: str, info: ValidationInfo) -> str:
        scope = info.data.get("scope")
        target = "" if target == NO_TARGET else target
        if scope is Scope.project and target:
            raise ValueError(
                "a project policy has no target: leave `target` out, or set `scope` to model or endpoint"
            )
        if scope in (Scope.model, Scope.endpoint) and not target:
            article = "an" if scope is Scope.endpoint else "a"
            raise ValueError(f"{article} {scope} policy needs a `target`: the {_noun(scope)} it applies to")
        return target

    def spec(self) -> PolicySpec:
        return PolicySpec.model_validate(self.model_dump(exclude={"scope", "target"}))

    @property
    def key(self) -> tuple[Scope, str, str]:
        return (self.scope, self.target, self.name)


def _noun(scope: Scope) -> str:
    return "model's alias" if scope is Scope.model else "endpoint's name"


def checked(data: Any, *, where: str = "") -> AttachedPolicy:
    """`data` as an AttachedPolicy; one 400 naming each bad field otherwise."""
    try:
        return AttachedPolicy.model_validate(data)
    except ValidationError as exc:
        raise UserError(joined(problems(exc, where)), param=first_field(exc, where)) from None


def attached(spec: PolicySpec, scope: Scope, target: str) -> AttachedPolicy:
    """`spec` attached to `scope` and `target` (a 400 when the target does not fit the scope)."""
    return checked({**spec.model_dump(), "scope": scope, "target": target})


def joined(found: Sequence[str]) -> str:
    return "invalid policy: " + "; ".join(found)


def fields(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(field, why) for each failure in `exc` (the 400 names every one, not the first)."""
    found = []
    for error in exc.errors():
        where = (prefix + ".".join(str(p) for p in error["loc"])).rstrip(".")
        found.append((where, str(error["msg"]).removeprefix("Value error, ")))
    return found


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """Each failed field of `exc` as "field: why"."""
    return [f"{where}: {why}" if where else why for where, why in fields(exc, prefix)]


def first_field(exc: ValidationError, prefix: str = "") -> str | None:
    found = fields(exc, prefix)
    return (found[0][0] or None) if found else None


@dataclass(frozen=True)
class PolicyView:
    """A stored policy as listings and `--json` show it."""

    scope: Scope
    target: str
    spec: PolicySpec
    created_by: str | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """As errors and spans name it (the same as `Policy.label`)."""
        return self.name if self.scope is Scope.project else f"{self.scope}:{self.target}/{self.name}"

    def public(self) -> dict[str, Any]:
        return {
            **self.spec.model_dump(mode="json"),
            "scope": self.scope.value,
            "target": self.target,
            "label": self.label,
            "created_by": self.created_by,
            "updated_by": self.updated_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Applied:
    """What `apply` did to one policy."""

    change: Change
    policy: PolicyView


def load_policies(text: str, source: str) -> list[AttachedPolicy]:
    """The policies of a YAML or JSON file: a list, or a mapping whose `policies` holds one; one 400
    naming each bad field of every policy."""
    from fmops.prompts.files import parse_documents  # PyYAML, loaded when a file is read

    documents = parse_documents(text, source)
    items: Any = documents[0] if len(documents) == 1 else documents
    if isinstance(items, dict) and set(items) == {"policies"}:
        items = items["policies"]
    if isinstance(items, dict):
        items = [items]  # one policy alone
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(
            f"{source}: a policies file holds a list of policies (name, guardrail, on, action, ...)"
        )
    found: list[str] = []
    policies: list[AttachedPolicy] = []
    for i, item in enumerate(items):
        try:
            policies.append(AttachedPolicy.model_validate(item))
        except ValidationError as exc:
            found.extend(problems(exc, f"policies.{i}." if len(items) > 1 else ""))
    if found:
        raise UserError(f"{source}: {joined(found)}")
    return policies


def from_endpoint_guardrail(endpoint: str, spec: GuardrailSpec) -> AttachedPolicy:
    """The policy an endpoint's `guardrails:` entry (a scorer that blocks) amounts to: the `scorer`
    guardrail on that endpoint, `action: block`, named as the endpoint names it in its errors. The
    entry runs as exactly this (`endpoint_policy`); written out, for an engineer who moves it into
    the stored policies (`fmops guardrails apply`, once the entry is removed from the endpoint: one
    label may not name both, see fmops.guardrails.service) and for the docs."""
    return AttachedPolicy(
        name=spec.label,
        scope=Scope.endpoint,
        target=endpoint,
        guardrail="scorer",
        on=spec.on,
        action=Action.block,
        config={"scorer": spec.scorer, "config": spec.config, "expect": spec.expect},
    )


def endpoint_policy(endpoint: str, spec: GuardrailSpec) -> Policy:
    """An endpoint's `guardrails:` entry ready to run in the engine (fmops.guardrails.engine), as the
    endpoint's stored policies run: the `scorer` guardrail, `action: block`, failing closed, labelled
    `endpoint:<endpoint>/<entry's name>`. Built once per registry generation by the endpoint resolver;
    a scorer that cannot be used raises UserError (the endpoint then cannot serve, and says why)."""
    from fmops.guardrails.checks.scorer import ScorerCheck, ScorerCheckConfig

    try:
        config = ScorerCheckConfig(scorer=spec.scorer, config=spec.config, expect=spec.expect)
    except ValidationError as exc:
        raise UserError(f"guardrail {spec.label!r}: {'; '.join(problems(exc))}", param="guardrails") from None
    return Policy(
        name=spec.label,
        scope=Scope.endpoint,
        target=endpoint,
        stages=frozenset({Stage(spec.on)}),
        action=Action.block,
        guardrail=ScorerCheck(config),
    )
