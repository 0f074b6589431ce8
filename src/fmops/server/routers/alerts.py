"""Alert rules of the caller's project, their events, and evaluating one on demand."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from fmops.alerts import AlertService
from fmops.alerts.evaluate import AlertEvaluator
from fmops.alerts.service import MAX_EVENTS_PAGE
from fmops.auth import Role
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.alerts import (
    AlertEventPublic,
    AlertRuleCreate,
    AlertRulePublic,
    AlertRuleUpdate,
    EvaluationPublic,
)

router = APIRouter(prefix="/api/alerts", tags=["alerts"], dependencies=gate(Role.engineer))
RuleId = Path(min_length=1, max_length=32, pattern="^[0-9a-f]+$")


def _service(platform: Platform) -> AlertService:
    return AlertService(platform.store, platform.settings)


@router.get("", response_model=list[AlertRulePublic], summary="Alert rules, by name")
def list_rules(platform: PlatformDep, principal: PrincipalDep) -> list[AlertRulePublic]:
    return [AlertRulePublic.model_validate(r) for r in _service(platform).rules(principal.project_id)]


@router.post(
    "",
    response_model=AlertRulePublic,
    status_code=201,
    summary="Create an alert rule",
    responses=error_responses(409),
)
def create_rule(body: AlertRuleCreate, platform: PlatformDep, principal: PrincipalDep) -> AlertRulePublic:
    rule = _service(platform).create(principal.project_id, body, key_id=principal.key_id)
    return AlertRulePublic.model_validate(rule)


@router.get(
    "/events",
    response_model=list[AlertEventPublic],
    summary="Fired and resolved events, newest first",
    responses=error_responses(404),
)
def list_events(
    platform: PlatformDep,
    principal: PrincipalDep,
    rule_id: str | None = Query(None, min_length=1, max_length=32, pattern="^[0-9a-f]+$"),
    limit: int = Query(50, ge=1, le=MAX_EVENTS_PAGE),
    before: str | None = Query(
        None, min_length=1, max_length=32, pattern="^[0-9a-f]+$", description="id of the last event seen"
    ),
) -> list[AlertEventPublic]:
    events = _service(platform).events(principal.project_id, rule_id=rule_id, limit=limit, before=before)
    return [AlertEventPublic.model_validate(e) for e in events]


@router.get("/{rule_id}", response_model=AlertRulePublic)
def get_rule(platform: PlatformDep, principal: PrincipalDep, rule_id: str = RuleId) -> AlertRulePublic:
    return AlertRulePublic.model_validate(_service(platform).get(principal.project_id, rule_id))


@router.patch(
    "/{rule_id}",
    response_model=AlertRulePublic,
    summary="Change a rule; omitted fields keep their value",
    responses=error_responses(409),
)
def update_rule(
    body: AlertRuleUpdate, platform: PlatformDep, principal: PrincipalDep, rule_id: str = RuleId
) -> AlertRulePublic:
    rule = _service(platform).update(principal.project_id, rule_id, body, key_id=principal.key_id)
    return AlertRulePublic.model_validate(rule)


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule and its events")
def delete_rule(platform: PlatformDep, principal: PrincipalDep, rule_id: str = RuleId) -> Response:
    _service(platform).delete(principal.project_id, rule_id)
    return Response(status_code=204)


@router.post(
    "/{rule_id}/evaluate",
    response_model=EvaluationPublic,
    summary="Evaluate a rule now: fires or resolves (and posts its webhook) as the background loop would",
)
async def evaluate_rule(
    platform: PlatformDep, principal: PrincipalDep, rule_id: str = RuleId
) -> EvaluationPublic:
    service = _service(platform)
    rule = await run_in_threadpool(service.get, principal.project_id, rule_id)
    result = await AlertEvaluator(platform.store, service).evaluate(rule)
    return EvaluationPublic.model_validate(result)
