"""A/B experiments of the caller's project's endpoints: read the results, promote the winner."""

from __future__ import annotations

from fastapi import APIRouter, Path

from fmops.auth import Role
from fmops.endpoints import experiments
from fmops.endpoints.schemas import NAME_PATTERN
from fmops.endpoints.service import EndpointService
from fmops.platform import PlatformDep
from fmops.prompts.service import PromptService
from fmops.server.deps import PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.endpoints import EndpointPublic
from fmops.server.schemas.experiments import ExperimentPublic, PromoteBody

router = APIRouter(prefix="/api/endpoints", tags=["endpoints"], dependencies=gate(Role.engineer))
Name = Path(pattern=NAME_PATTERN, description="The endpoint's name")


@router.get(
    "/{name}/experiment",
    response_model=ExperimentPublic,
    summary="Each variant's results with 95% intervals, compared with the control",
    responses=error_responses(409),
)
def experiment(platform: PlatformDep, principal: PrincipalDep, name: str = Name) -> ExperimentPublic:
    report = experiments.report(platform.store, principal.project_id, name)
    return ExperimentPublic.model_validate(report)


@router.post(
    "/{name}/promote",
    response_model=EndpointPublic,
    summary="Serve only this variant from now on (its prompt version, model and params); ends the experiment",
    responses=error_responses(409),
)
def promote(
    body: PromoteBody, platform: PlatformDep, principal: PrincipalDep, name: str = Name
) -> EndpointPublic:
    service = EndpointService(
        platform.store, platform.catalog, PromptService(platform.store, platform.catalog)
    )
    view = experiments.promote(
        service, principal.project_id, name, body.variant, actor=principal.user_name, note=body.note
    )
    return EndpointPublic.model_validate(view.public())
