"""Batch inference over a dataset version: a job answering every record through the gateway as the
caller's key; the answers become a chat dataset version (`GET /api/jobs/{id}` follows it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import Field

from fmops.auth import Role
from fmops.datasets.infer import DEFAULT_CONCURRENCY, KIND, submit
from fmops.datasets.service import NAME_PATTERN
from fmops.jobs import get_kind
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate
from fmops.server.schemas.base import Input
from fmops.server.schemas.jobs import JobPublic

router = APIRouter(tags=["datasets"], dependencies=gate(Role.engineer))


class InferRequest(Input):
    version: int | None = Field(None, ge=1, le=999_999_999, description="Version to answer (default: newest)")
    model: str | None = Field(None, max_length=200, description="A model alias of the project")
    endpoint: str | None = Field(None, max_length=200, description="An endpoint (instead of a model)")
    prompt: str | None = Field(
        None, max_length=200, description="NAME or NAME@LABEL of a prompt, filled from each record"
    )
    output: str | None = Field(
        None,
        max_length=100,
        description="Dataset the answers become a new version of (default: this one if it holds chat "
        "records, else NAME-answers)",
    )
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    parameters: dict[str, Any] = Field(default_factory=dict, description="Other chat parameters (top_p, ...)")
    seed: int | None = None
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=256, description="Calls in flight per chunk")


@router.post(
    "/api/datasets/{name}/infer",
    response_model=JobPublic,
    status_code=201,
    summary="Answer every record of a dataset version through the gateway (a job: one new chat version)",
)
def infer(
    body: InferRequest,
    platform: PlatformDep,
    principal: PrincipalDep,
    name: str = PathParam(pattern=NAME_PATTERN, description="The dataset's name"),
) -> JobPublic:
    principal.require(get_kind(KIND).min_role, "run batch inference")
    parameters = {**body.parameters, "max_tokens": body.max_tokens, "temperature": body.temperature}
    job = submit(
        platform.store,
        platform.settings,
        platform.jobs,
        platform.datasets,
        project_id=principal.project_id,
        dataset=name if body.version is None else f"{name}@{body.version}",
        created_by_key_id=principal.key_id,
        model=body.model,
        endpoint=body.endpoint,
        prompt=body.prompt,
        output=body.output,
        parameters=parameters,
        seed=body.seed,
        concurrency=body.concurrency,
    )
    return JobPublic.model_validate(job)
