"""Online evaluators of the caller's project, and the scorers they can use."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.auth import Role
from fmops.evaluators import EvaluatorService, OnlineEvaluators
from fmops.platform import Platform, PlatformDep
from fmops.scorers import describe, scorers
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.evaluators import EvaluatorCreate, EvaluatorPublic, EvaluatorUpdate, ScorerPublic

router = APIRouter(tags=["evaluators"], dependencies=gate(Role.engineer))


def _service(platform: Platform) -> EvaluatorService:
    return EvaluatorService(platform.store, platform.catalog)


def _applied(platform: Platform) -> None:
    """A change applies to this process's next traces at once (other replicas within seconds)."""
    for service in platform.services:
        if isinstance(service, OnlineEvaluators):
            service.refresh()


@router.get(
    "/api/scorers",
    response_model=list[ScorerPublic],
    summary="Installed scorers: what each needs, where it can be used, its config's schema",
)
def list_scorers() -> list[ScorerPublic]:
    return [ScorerPublic.model_validate(describe(name, cls)) for name, cls in sorted(scorers().items())]


@router.get("/api/evaluators", response_model=list[EvaluatorPublic], summary="Evaluator rules, by name")
def list_evaluators(platform: PlatformDep, principal: PrincipalDep) -> list[EvaluatorPublic]:
    return [EvaluatorPublic.model_validate(r) for r in _service(platform).rules(principal.project_id)]


@router.post(
    "/api/evaluators",
    response_model=EvaluatorPublic,
    status_code=201,
    summary="Score sampled live traces with a scorer",
    responses=error_responses(409),
)
def create_evaluator(
    body: EvaluatorCreate, platform: PlatformDep, principal: PrincipalDep
) -> EvaluatorPublic:
    rule = _service(platform).create(principal.project_id, body, created_by_key_id=principal.key_id)
    _applied(platform)
    return EvaluatorPublic.model_validate(rule)


@router.get("/api/evaluators/{rule_id}", response_model=EvaluatorPublic)
def get_evaluator(rule_id: str, platform: PlatformDep, principal: PrincipalDep) -> EvaluatorPublic:
    return EvaluatorPublic.model_validate(_service(platform).get(principal.project_id, rule_id))


@router.patch(
    "/api/evaluators/{rule_id}",
    response_model=EvaluatorPublic,
    summary="Change a rule; fields left out keep their value",
    responses=error_responses(409),
)
def update_evaluator(
    rule_id: str, body: EvaluatorUpdate, platform: PlatformDep, principal: PrincipalDep
) -> EvaluatorPublic:
    rule = _service(platform).update(principal.project_id, rule_id, body)
    _applied(platform)
    return EvaluatorPublic.model_validate(rule)


@router.delete("/api/evaluators/{rule_id}", response_model=EvaluatorPublic, summary="Delete a rule")
def delete_evaluator(rule_id: str, platform: PlatformDep, principal: PrincipalDep) -> EvaluatorPublic:
    rule = _service(platform).delete(principal.project_id, rule_id)
    _applied(platform)
    return EvaluatorPublic.model_validate(rule)
