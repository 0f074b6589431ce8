"""Prompt optimisation runs (issue 20): start one (a job the server's workers run), list and read
runs with their candidates and the winner's diff against the start, cancel one.

A request with a problem (a suite too small to split, a budget that cannot pay for the least run, a
prompt whose user message takes no input, an unknown optimizer or model) is one 400 saying what to
fix, before anything is queued. Everything needs an engineer key: a run calls models on the
project's budget and pushes prompt versions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import Field

from fmops.artifacts import ArtifactStore
from fmops.auth import Role
from fmops.datasets import DatasetService
from fmops.jobs import get_kind
from fmops.optimizers.service import (
    DEFAULT_BUDGET,
    DEFAULT_HOLDOUT,
    KIND,
    MAX_BUDGET,
    OptimizeService,
    Request,
)
from fmops.platform import Platform, PlatformDep
from fmops.server.deps import NO_NUL, PrincipalDep, gate
from fmops.server.errors import error_responses
from fmops.server.schemas.base import Input, Output, Page
from fmops.store.models import PromptCandidate, PromptOptimization

router = APIRouter(prefix="/api/optimizations", tags=["prompts"], dependencies=gate(Role.engineer))
RunId = PathParam(pattern=r"^[0-9a-zA-Z]{1,32}$", description="The optimisation run's id")


class OptimizeRequest(Input):
    prompt: str = Field(
        min_length=1,
        max_length=210,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,99}(@[a-z0-9][a-z0-9._-]{0,99})?$",
        description="NAME, NAME@LABEL or NAME@VERSION: the version to start from (default: the newest)",
    )
    suite: dict[str, Any] | str = Field(
        description="The eval suite whose cases and scorers judge candidates (JSON, or its YAML text)"
    )
    optimizer: str = Field("instructions", max_length=100, description="fewshot | instructions | gepa")
    budget: int = Field(
        DEFAULT_BUDGET,
        ge=0,
        le=MAX_BUDGET,
        description="Calls the run may make (candidates' and optimizer's)",
    )
    optimizer_model: str | None = Field(
        None, max_length=200, description="The model that rewrites instructions (default: the target's)"
    )
    holdout: float = Field(DEFAULT_HOLDOUT, ge=0.1, le=0.9, description="Share of cases held out")
    config: dict[str, Any] = Field(default_factory=dict, description="The optimizer's own settings")


class RunPublic(Output):
    id: str
    prompt: str
    start_version: int
    optimizer: str
    suite: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    job_id: str | None = None
    budget: int
    calls: int = Field(description="Gateway calls made (target and optimizer model)")
    dropped: int = Field(description="Proposals dropped: the optimizer model's answers were unusable")
    pushed_version: int | None = Field(None, description="The version pushed (no label is moved)")
    result: dict[str, Any] | None = Field(
        None, description="The winner, the held-out paired test and intervals, the version's message"
    )
    definition: dict[str, Any] = Field(description="What the run resolved: suite, dataset, split, optimizer")
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class CandidatePublic(Output):
    seq: int
    parent_seq: int | None = None
    change: str
    messages: list[dict[str, Any]]
    opt_score: float | None = Field(None, description="Mean score on the optimisation cases")
    heldout_score: float | None = Field(None, description="Mean score on the held-out cases, if measured")


class DiffPublic(Output):
    diff: str = Field(description="A unified diff of the winner's YAML against the start's; empty: none")


def service(platform: Platform) -> OptimizeService:
    return OptimizeService(
        platform.store,
        platform.catalog,
        platform.jobs,
        lambda: DatasetService(platform.store, ArtifactStore.from_settings(platform.settings)),
    )


def run_public(run: PromptOptimization) -> RunPublic:
    return RunPublic(
        id=run.id,
        prompt=run.prompt_name,
        start_version=run.start_version,
        optimizer=run.optimizer,
        suite=run.suite_name,
        status=run.status,
        job_id=run.job_id,
        budget=run.budget,
        calls=run.calls,
        dropped=run.dropped,
        pushed_version=run.pushed_version,
        result=run.result,
        definition=run.definition,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


def candidate_public(row: PromptCandidate) -> CandidatePublic:
    return CandidatePublic.model_validate(row)


@router.post(
    "",
    response_model=RunPublic,
    status_code=201,
    summary="Start optimising a prompt (a job)",
    responses=error_responses(404),  # the prompt (or the version or label named) does not exist
)
def start(body: OptimizeRequest, platform: PlatformDep, principal: PrincipalDep) -> RunPublic:
    principal.require(get_kind(KIND).min_role, "optimise prompts")
    request = Request(
        prompt=body.prompt,
        suite=body.suite,
        optimizer=body.optimizer,
        budget=body.budget,
        optimizer_model=body.optimizer_model,
        holdout=body.holdout,
        config=body.config,
    )
    run = service(platform).start(principal.project_id, request, created_by_key_id=principal.key_id)
    return run_public(run)


@router.get("", response_model=Page[RunPublic], summary="Optimisation runs, newest first")
def list_runs(
    platform: PlatformDep,
    principal: PrincipalDep,
    prompt: str | None = Query(None, max_length=100, pattern=NO_NUL, description="Only this prompt's runs"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(
        None, max_length=32, pattern=NO_NUL, description="next_cursor of the last page"
    ),
) -> Page[RunPublic]:
    runs = service(platform).runs(principal.project_id, prompt=prompt, limit=limit, before=cursor)
    next_cursor = runs[-1].id if len(runs) == limit else None
    return Page[RunPublic](data=[run_public(r) for r in runs], next_cursor=next_cursor)


@router.get("/{run_id}", response_model=RunPublic, summary="A run: its status, winner and held-out test")
def get_run(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> RunPublic:
    return run_public(service(platform).get(principal.project_id, run_id))


@router.get(
    "/{run_id}/candidates",
    response_model=list[CandidatePublic],
    summary="Every candidate of a run with its scores on optimisation and held-out cases",
)
def candidates(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> list[CandidatePublic]:
    return [candidate_public(c) for c in service(platform).candidates(principal.project_id, run_id)]


@router.get("/{run_id}/diff", response_model=DiffPublic, summary="The winner against the start version")
def diff(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> DiffPublic:
    return DiffPublic(diff=service(platform).diff(principal.project_id, run_id))


@router.post(
    "/{run_id}/cancel",
    response_model=RunPublic,
    summary="Stop a run: it ends cancelled and pushes no version",
    responses=error_responses(409),
)
def cancel(platform: PlatformDep, principal: PrincipalDep, run_id: str = RunId) -> RunPublic:
    return run_public(service(platform).cancel(principal.project_id, run_id))
