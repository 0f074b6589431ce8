"""Feedback and scores on traces: consumers give thumbs on their own calls, engineers read them back."""

from __future__ import annotations

from fastapi import APIRouter

from fmops.auth import Role
from fmops.feedback import FeedbackService
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.feedback import FeedbackCreate, ScorePublic

router = APIRouter(tags=["feedback"])


@router.post(
    "/api/feedback",
    response_model=ScorePublic,
    status_code=201,
    summary="Score a trace: thumbs, number, label, comment or corrected output",
    dependencies=gate(Role.consumer),
    responses=error_responses(403, 404),
)
def create_feedback(body: FeedbackCreate, platform: PlatformDep, principal: PrincipalDep) -> ScorePublic:
    score = FeedbackService(platform.store, platform.tracer).record(principal, body)
    return ScorePublic.model_validate(score)


@router.get(
    "/api/traces/{trace_id}/feedback",
    response_model=list[ScorePublic],
    summary="Scores of a trace, oldest first",
    dependencies=gate(Role.engineer),
)
def list_feedback(trace_id: str, platform: PlatformDep, principal: PrincipalDep) -> list[ScorePublic]:
    scores = FeedbackService(platform.store, platform.tracer).list_for_trace(principal.project_id, trace_id)
    return [ScorePublic.model_validate(s) for s in scores]
