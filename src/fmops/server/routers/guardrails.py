"""Guardrails installed on the server, and the policies of the caller's project that run them.

A policy is addressed by where it is attached and its name: /api/policies/{scope}/{target}/{name},
the target being a model's alias (which may hold "/"), an endpoint's name, or "_" for the project.
Policies name deny-lists and topics a caller should not learn to dodge: engineers only.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query

from fmops.auth import Role
from fmops.errors import UserError
from fmops.guardrails.policy import PolicyName, Scope
from fmops.guardrails.registry import describe, guardrails
from fmops.guardrails.schemas import NO_TARGET, TARGET_PATTERN, Applied, PolicyView, attached
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.guardrails import (
    GuardrailPublic,
    PolicyApplied,
    PolicyCreate,
    PolicyList,
    PolicyPublic,
    PolicyReplace,
)

router = APIRouter(tags=["guardrails"], dependencies=gate(Role.engineer))
ONE = "/api/policies/{scope}/{target:path}/{name}"
Target = Path(
    min_length=1,
    max_length=200,
    pattern=TARGET_PATTERN,
    description="The model's alias or the endpoint's name; _ for the project",
)
Name = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="The policy's name")


def _public(view: PolicyView) -> PolicyPublic:
    return PolicyPublic.model_validate(view.public())


def _applied(done: Applied) -> PolicyApplied:
    return PolicyApplied(change=done.change, policy=_public(done.policy))


def _target(scope: Scope, target: str) -> str:
    return "" if target == NO_TARGET and scope is Scope.project else target


@router.get(
    "/api/guardrails",
    response_model=list[GuardrailPublic],
    summary="Installed guardrails: where each can run, whether it finds spans, its config's schema",
)
def list_guardrails() -> list[GuardrailPublic]:
    return [GuardrailPublic.model_validate(describe(name, cls)) for name, cls in sorted(guardrails().items())]


@router.get("/api/policies", response_model=list[PolicyPublic], summary="The project's policies")
def list_policies(
    platform: PlatformDep,
    principal: PrincipalDep,
    scope: Scope | None = Query(None, description="Only those attached this way"),
    target: str | None = Query(
        None, max_length=200, pattern=TARGET_PATTERN, description="Only those on this model or endpoint"
    ),
) -> list[PolicyPublic]:
    views = platform.guardrails.list(principal.project_id, scope=scope, target=target)
    return [_public(v) for v in views]


@router.post(
    "/api/policies",
    response_model=PolicyPublic,
    status_code=201,
    summary="Attach a policy to the project, a model or an endpoint; it runs on the next call",
    responses=error_responses(409),
)
def create_policy(body: PolicyCreate, platform: PlatformDep, principal: PrincipalDep) -> PolicyPublic:
    return _public(platform.guardrails.create(principal.project_id, body, actor=principal.user_name))


@router.post(
    "/api/policies/apply",
    response_model=list[PolicyApplied],
    summary="Create or replace each policy of a list (a policies file); all or, when one is wrong, none",
    responses=error_responses(409),  # an endpoint policy named as one of the endpoint's guardrails: entries
)
def apply_policies(body: PolicyList, platform: PlatformDep, principal: PrincipalDep) -> list[PolicyApplied]:
    done = platform.guardrails.apply(principal.project_id, body.policies, actor=principal.user_name)
    return [_applied(d) for d in done]


@router.get(ONE, response_model=PolicyPublic, summary="One policy")
def get_policy(
    platform: PlatformDep, principal: PrincipalDep, scope: Scope, target: str = Target, name: str = Name
) -> PolicyPublic:
    return _public(platform.guardrails.get(principal.project_id, scope, _target(scope, target), name))


@router.put(
    ONE, response_model=PolicyApplied, summary="Create or replace one policy", responses=error_responses(409)
)
def put_policy(
    body: PolicyReplace,
    platform: PlatformDep,
    principal: PrincipalDep,
    scope: Scope,
    target: str = Target,
    name: PolicyName = Name,
) -> PolicyApplied:
    if body.name != name:
        raise UserError(
            f"the body names policy {body.name!r} and the path {name!r}; they must agree", param="name"
        )
    policy = attached(body, scope, _target(scope, target))
    [done] = platform.guardrails.apply(principal.project_id, [policy], actor=principal.user_name)
    return _applied(done)


@router.delete(ONE, response_model=PolicyPublic, summary="Remove a policy")
def delete_policy(
    platform: PlatformDep, principal: PrincipalDep, scope: Scope, target: str = Target, name: str = Name
) -> PolicyPublic:
    view = platform.guardrails.delete(
        principal.project_id, scope, _target(scope, target), name, actor=principal.user_name
    )
    return _public(view)
