"""Prompt optimisation runs: check what was asked (prompt, suite, optimizer, budget) and refuse with
what to fix, record the run with its seeded split of cases, queue its job, read runs back.

A run's `definition` records what it resolved (lineage): the suite as it ran with its dataset
version and hash, the start version, the target model and parameters, the optimisation and
held-out case indices, the optimizer and its model.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from fmops.catalog import Catalog
from fmops.errors import NotFound, UserError
from fmops.evals.service import EvalService
from fmops.evals.suite import Suite, did_you_mean
from fmops.jobs import JobService
from fmops.optimizers.base import get_optimizer
from fmops.optimizers.candidates import variables
from fmops.prompts.files import unified_diff
from fmops.prompts.schemas import PromptVersionView
from fmops.store import Store
from fmops.store.models import PromptCandidate, PromptOptimization

if TYPE_CHECKING:
    from fmops.datasets import DatasetService

KIND = "prompts.optimize"
MIN_SIDE = 4  # cases on each side of the split: fewer and neither the search nor the test means much
DEFAULT_BUDGET = 200
MAX_BUDGET = 100_000
DEFAULT_HOLDOUT = 0.4


@dataclass(frozen=True)
class Request:
    """What `fmops prompts optimize` (or POST /api/prompts/{name}/optimizations) asks for."""

    prompt: str  # NAME, NAME@LABEL or NAME@VERSION
    suite: str | bytes | Mapping[str, Any]
    optimizer: str = "instructions"
    budget: int = DEFAULT_BUDGET
    optimizer_model: str | None = None
    holdout: float = DEFAULT_HOLDOUT
    config: Mapping[str, Any] | None = None


def split(count: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(optimisation, held-out) case indices, shuffled by `seed`; the same every time."""
    order = list(range(count))
    random.Random(seed).shuffle(order)  # noqa: S311 (a reproducible split, not a secret)
    held = max(MIN_SIDE, round(count * holdout))
    return sorted(order[held:]), sorted(order[:held])


def least_budget(opt: int, held: int, reflects: bool) -> int:
    """The start and one candidate on the optimisation cases, both on the held-out ones, and (for an
    optimizer that asks a model) one reflection."""
    return 2 * opt + 2 * held + (1 if reflects else 0)


class OptimizeService:
    def __init__(
        self, store: Store, catalog: Catalog, jobs: JobService, datasets: Callable[[], DatasetService]
    ) -> None:
        self.store, self.catalog, self.jobs = store, catalog, jobs
        self.evals = EvalService(store, catalog, jobs, datasets)
        self.prompts = self.evals.prompts

    # --- checking and starting ------------------------------------------------------------------

    def _start_view(self, project_id: str, ref: str) -> PromptVersionView:
        name, _, at = ref.partition("@")
        if not name:
            raise UserError("prompt: NAME, NAME@LABEL or NAME@VERSION", param="prompt")
        return self.prompts.resolve(project_id, name, at or "latest")

    def plan(self, project_id: str, request: Request) -> dict[str, Any]:
        """The run's definition, or a 400 saying what to fix (nothing is recorded)."""
        if not 0.1 <= request.holdout <= 0.9:
            raise UserError("holdout: a fraction from 0.1 to 0.9 of the cases", param="holdout")
        cls = get_optimizer(request.optimizer)
        try:  # its config is checked here, before anything runs
            optimizer = cls(dict(request.config or {}))
        except (TypeError, ValueError) as exc:
            raise UserError(f"config of optimizer {cls.name!r}: {exc}", param="config") from None
        view = self._start_view(project_id, request.prompt)
        suite, _targets, version = self.evals.check(project_id, request.suite)
        model, parameters = self._model(suite, view)
        self._check_input(view, suite)
        count = version.rows if version is not None else len(suite.cases or [])
        if count < 2 * MIN_SIDE:
            raise UserError(
                f"the suite {suite.name!r} has {count} case{'s' if count != 1 else ''}; optimising needs at "
                f"least {2 * MIN_SIDE}: {MIN_SIDE} to optimise on and {MIN_SIDE} held out to prove the gain",
                param="suite",
            )
        opt, held = split(count, request.holdout, suite.seed)
        if len(opt) < MIN_SIDE:
            raise UserError(
                f"holdout {request.holdout} leaves {len(opt)} of {count} cases to optimise on; at least "
                f"{MIN_SIDE} are needed: lower --holdout",
                param="holdout",
            )
        least = least_budget(len(opt), len(held), cls.uses_optimizer_model)
        if not least <= request.budget <= MAX_BUDGET:
            raise UserError(
                f"budget {request.budget}: this suite needs at least {least} calls (the start and one "
                f"candidate on its {len(opt)} optimisation cases, both on its {len(held)} held-out cases"
                + (", one call to the optimizer model" if cls.uses_optimizer_model else "")
                + f") and at most {MAX_BUDGET}",
                param="budget",
            )
        optimizer_model = request.optimizer_model or model
        models = self.catalog.models(project_id)
        if optimizer_model not in models:
            raise UserError(
                f"optimizer model {optimizer_model!r} is not in this project"
                + did_you_mean(optimizer_model, models),
                param="optimizer_model",
            )
        ran = replace(suite, dataset=version.id if version is not None else None)
        return {
            "suite": ran.as_dict(),
            "dataset": None
            if version is None
            else {"id": version.id, "ref": version.ref, "content_hash": version.content_hash},
            "prompt": {"name": view.name, "version": view.version},
            "model": model,
            "parameters": parameters,
            "optimizer": {"name": cls.name, "config": optimizer.config, "model": optimizer_model},
            "split": {"seed": suite.seed, "holdout": request.holdout, "opt": opt, "heldout": held},
        }

    @staticmethod
    def _model(suite: Suite, view: PromptVersionView) -> tuple[str, dict[str, Any]]:
        """The model the prompt is optimised on: the suite's target for this prompt, else the prompt's."""
        for target in suite.targets:
            if target.prompt == view.name and target.model is not None:
                return target.model, dict(target.parameters)
        if view.model is not None:
            return view.model, {}
        raise UserError(
            f"prompt {view.name!r} names no model and no target of the suite uses it with one: add a target "
            f"{{model: MODEL, prompt: {view.name}}} to the suite, or a model to the prompt",
            param="suite",
        )

    @staticmethod
    def _check_input(view: PromptVersionView, suite: Suite) -> None:
        """A prompt with a user turn must let the case in through a variable (a prompt of instructions
        only is followed by the case's messages, as an endpoint's is)."""
        if not any(m.get("role") == "user" for m in view.messages):
            return
        used = variables(view.messages)
        if used and suite.dataset is not None:
            return  # the dataset's inputs are read by the job; its variables cannot be listed here
        given = {"input"}
        for case in suite.cases or []:
            if isinstance(case.get("input"), dict) and not isinstance(case["input"].get("messages"), list):
                given |= set(case["input"])
            extra = (case.get("metadata") or {}).get("variables")
            if isinstance(extra, dict):
                given |= set(extra)
        if used & given:
            return
        raise UserError(
            f"prompt {view.name}@{view.version} has a user message that uses none of the case's input, so "
            "every case would get the same request: add {{ input }} (the case's text) to its user message"
            + (
                f", or one of the variables {', '.join(sorted(given - {'input'}))}"
                if given - {"input"}
                else ""
            )
            + ", or drop the user message so the case's messages follow the instructions",
            param="prompt",
        )

    def start(
        self, project_id: str, request: Request, *, created_by_key_id: str | None
    ) -> PromptOptimization:
        """Check the request, record the run and queue its job (nothing recorded on a problem)."""
        if not created_by_key_id:
            raise UserError("an optimisation calls models as a key: start it with one")
        definition = self.plan(project_id, request)
        with self.store.write() as session:
            run = PromptOptimization(
                project_id=project_id,
                prompt_name=definition["prompt"]["name"],
                start_version=definition["prompt"]["version"],
                optimizer=definition["optimizer"]["name"],
                suite_name=definition["suite"]["name"],
                definition=definition,
                budget=request.budget,
                status="queued",
                calls=0,
                dropped=0,
                created_by_key_id=created_by_key_id,
            )
            session.add(run)
        job = self.jobs.submit(
            KIND, {"run_id": run.id}, project_id=project_id, created_by_key_id=created_by_key_id
        )
        with self.store.write() as session:
            stored = session.get(PromptOptimization, run.id)
            assert stored is not None
            stored.job_id = job.id
        return self.get(project_id, run.id)

    def cancel(self, project_id: str, run_id: str) -> PromptOptimization:
        """Ask the run's job to stop; it ends cancelled and pushes nothing."""
        run = self.get(project_id, run_id)
        if run.job_id is None:
            raise NotFound(f"optimisation {run_id} has no job", param="run_id")
        self.jobs.cancel(run.job_id, project_id)
        return self.get(project_id, run_id)

    # --- reads -----------------------------------------------------------------------------------

    def get(self, project_id: str | None, run_id: str) -> PromptOptimization:
        with self.store.session() as session:
            run = session.get(PromptOptimization, run_id)
        if run is None or (project_id is not None and run.project_id != project_id):
            raise NotFound(f"no prompt optimisation {run_id!r} in this project", param="run_id")
        return run

    def runs(
        self, project_id: str, *, prompt: str | None = None, limit: int = 50, before: str | None = None
    ) -> list[PromptOptimization]:
        query = (
            select(PromptOptimization)
            .where(PromptOptimization.project_id == project_id)
            .order_by(PromptOptimization.id.desc())
            .limit(limit)
        )
        if prompt is not None:
            query = query.where(PromptOptimization.prompt_name == prompt)
        if before is not None:
            query = query.where(PromptOptimization.id < before)
        with self.store.session() as session:
            return list(session.scalars(query))

    def candidates(self, project_id: str, run_id: str) -> list[PromptCandidate]:
        self.get(project_id, run_id)
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(PromptCandidate)
                    .where(PromptCandidate.run_id == run_id)
                    .order_by(PromptCandidate.seq)
                )
            )

    def diff(self, project_id: str, run_id: str) -> str:
        """The winner against the start as a unified diff of their YAML; empty when there is no winner."""
        run = self.get(project_id, run_id)
        winner = (run.result or {}).get("winner")
        if winner is None:
            return ""
        rows = {c.seq: c for c in self.candidates(project_id, run_id)}
        start = self.prompts.get(project_id, run.prompt_name, version=run.start_version)
        best = rows.get(int(winner))
        if best is None:
            return ""
        new = replace(start, messages=list(best.messages), version=run.pushed_version or 0)
        return unified_diff(start, new, str(run.start_version), str(run.pushed_version or "candidate"))


def start_experiment(
    service: OptimizeService, project_id: str, run_id: str, endpoint: str, *, actor: str | None
) -> str:
    """An A/B experiment on `endpoint`: what it serves now (control) against the pushed version
    (optimized), half the traffic each; the endpoint's own experiment report and promotion follow.
    The same change as `PATCH /api/endpoints/{name}` with these variants. Returns the endpoint's name."""
    from fmops.endpoints.schemas import EndpointUpdate, VariantSpec
    from fmops.endpoints.service import EndpointService

    run = service.get(project_id, run_id)
    if run.pushed_version is None:
        raise UserError(f"optimisation {run_id} pushed no version: there is nothing to test", param="run_id")
    endpoints = EndpointService(service.store, service.catalog, service.prompts)
    view = endpoints.get(project_id, endpoint)
    if view.config.prompt != run.prompt_name:
        raise UserError(
            f"endpoint {endpoint!r} serves prompt {view.config.prompt!r}, not {run.prompt_name!r}: "
            "choose an endpoint that serves it",
            param="endpoint",
        )
    variants = [
        VariantSpec(name="control", weight=1.0),
        VariantSpec(name="optimized", weight=1.0, version=run.pushed_version),
    ]
    endpoints.update(project_id, endpoint, EndpointUpdate(variants=variants), actor=actor)
    return endpoint
