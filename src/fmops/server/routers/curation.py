"""Curation of the caller's project's datasets: run a recipe as a job; list the registered steps.

The job's versions carry each step's counts and report (`GET /api/datasets/{name}/versions/{v}`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import Field

from fmops.auth import Role
from fmops.curation import steps
from fmops.curation.job import KIND, submit
from fmops.datasets.service import NAME_PATTERN
from fmops.jobs import get_kind
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.schemas.base import Input, Output
from fmops.server.schemas.jobs import JobPublic

router = APIRouter(tags=["curation"], dependencies=gate(Role.engineer))


class CurateRequest(Input):
    recipe: dict[str, Any] | str = Field(
        description="The recipe: `{steps: [{dedup: {method: exact}}, ...]}` as JSON, or its YAML text",
        examples=[{"steps": [{"dedup": {"method": "exact"}}, {"split": {"validation": 0.1}}]}],
    )
    version: int | None = Field(None, ge=1, le=999_999_999, description="Version to curate (default: newest)")


class StepPublic(Output):
    name: str
    description: str
    passes: int
    options_schema: dict[str, Any]


@router.post(
    "/api/datasets/{name}/curate",
    response_model=JobPublic,
    status_code=201,
    summary="Curate a dataset version with a recipe (a job: one new version per step)",
)
def curate(
    body: CurateRequest,
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = PathParam(pattern=NAME_PATTERN, description="The dataset's name"),
) -> JobPublic:
    principal.require(get_kind(KIND).min_role, "curate datasets")
    datasets = platform.datasets
    job = submit(
        platform.jobs,
        datasets,
        project_id=principal.project_id,
        dataset=name if body.version is None else f"{name}@{body.version}",
        recipe=body.recipe,
        created_by_key_id=principal.key_id,
    )
    return JobPublic.model_validate(job)


@router.get("/api/curation/steps", response_model=list[StepPublic], summary="Curation steps this server has")
def list_steps() -> list[StepPublic]:
    return [
        StepPublic(
            name=name,
            description=cls.description,
            passes=cls.passes,
            options_schema=cls.Options.model_json_schema(),
        )
        for name, cls in sorted(steps().items())
    ]
