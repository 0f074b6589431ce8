"""The `prompts.optimize` job: score the start, let the optimizer search, prove the best on the
held-out cases, and push it as a new version (never moving a label).

1. The start version is scored on the optimisation cases (the budget's first calls).
2. The optimizer plugin proposes and scores candidates until its budget is spent.
3. The best candidate on the optimisation cases, if it beats the start there, and the start are
   scored on the held-out cases (reserved up front); a paired test (McNemar's exact test for
   pass/fail scores, Wilcoxon's signed-rank otherwise, as evals compare) and a bootstrap interval of
   the gain are computed there.
4. It is pushed as a version whose message says what changed and that held-out gain. A cancel seen
   at any point before the push ends the run cancelled with nothing pushed; the push is the last
   step, in one transaction. A retried job starts the search over (its candidates are replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import delete, update

from fmops.auth import AuthService
from fmops.counters import make_counters
from fmops.errors import FmopsError
from fmops.evals.runner import FLUSH_S, Runner
from fmops.evals.stats import bootstrap_ci, paired_test
from fmops.evals.suite import Suite, TargetSpec
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.jobs import JobCancelled, JobContext, JobService, job_kind
from fmops.optimizers.base import BudgetSpent, Candidate, get_optimizer
from fmops.optimizers.search import Search
from fmops.optimizers.service import KIND, OptimizeService
from fmops.prompts.schemas import MessageTemplate, PromptSpec
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store, utcnow
from fmops.store.models import PromptCandidate, PromptOptimization

Id = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9a-zA-Z]+$")]


class OptimizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: Id


def service_for(store: Store, settings: Settings, jobs: JobService | None = None) -> OptimizeService:
    from fmops.catalog import Catalog

    def datasets() -> Any:
        from fmops.artifacts import ArtifactStore
        from fmops.datasets import DatasetService

        return DatasetService(store, ArtifactStore.from_settings(settings))

    catalog = Catalog(store, settings, SecretBox.from_settings(settings))
    return OptimizeService(
        store, catalog, jobs or JobService(store, max_attempts=settings.job_max_attempts), datasets
    )


def _set(store: Store, run_id: str, **values: Any) -> None:
    with store.write() as session:
        session.execute(update(PromptOptimization).where(PromptOptimization.id == run_id).values(**values))


def _store_candidate(store: Store, run_id: str, candidate: Candidate, opt: list[int]) -> None:
    with store.write() as session:
        session.add(
            PromptCandidate(
                run_id=run_id,
                seq=candidate.seq,
                parent_seq=candidate.parent,
                change=candidate.change,
                messages=candidate.messages,
                opt_score=candidate.mean(opt),
                opt_scores={str(i): v for i, v in candidate.scores.items()},
            )
        )


def _message(run: PromptOptimization, winner: Candidate, test: dict[str, Any], scorer: str) -> str:
    ci = test.get("ci") or (None, None)
    interval = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci[0] is not None else "[n/a]"
    p = test.get("p_value")
    text = (
        f"fmops prompts optimize ({run.optimizer}, run {run.id}) from v{run.start_version}: {winner.change}. "
        f"Held-out {scorer} {test['mean_a']:.3f} -> {test['mean_b']:.3f} on {test['n']} cases: "
        f"gain {test['diff']:+.3f}, 95% CI {interval}, {test['test']} p = "
        + (f"{p:.3g}" if p is not None else "n/a")
    )
    return text[:2000]


def execute(store: Store, settings: Settings, ctx: JobContext, run_id: str) -> dict[str, Any]:
    service = service_for(store, settings)
    run = service.get(ctx.project_id, run_id)
    if not run.created_by_key_id:
        raise FmopsError("the run has no key to call models with")
    principal = AuthService(store, cache_seconds=0).principal_for_key_id(run.created_by_key_id)
    definition = run.definition
    suite = Suite.from_dict(definition["suite"])
    spec = TargetSpec(
        name="start",
        model=definition["model"],
        prompt=definition["prompt"]["name"],
        prompt_ref=str(definition["prompt"]["version"]),
        parameters=definition["parameters"],
    )
    problems: list[str] = []
    base = service.evals.targets.resolve(ctx.project_id, Suite(suite.name, [spec], suite.scorers), problems)
    if problems:
        raise FmopsError("; ".join(problems))
    cases = {c.index: c for c in service.evals.cases(ctx.project_id, definition)}
    opt, held = list(definition["split"]["opt"]), list(definition["split"]["heldout"])
    with store.write() as session:  # a retried attempt searches again from the start
        session.execute(delete(PromptCandidate).where(PromptCandidate.run_id == run_id))
    _set(store, run_id, status="running", error=None, result=None, pushed_version=None)
    optimizer = get_optimizer(run.optimizer)(definition["optimizer"]["config"])
    outcome: dict[str, Any] = {}

    def report(search: Search) -> None:
        best = max((c.mean(opt) or 0.0 for c in search.candidates), default=0.0)
        ctx.progress(
            search.spent / run.budget,
            f"{search.spent}/{run.budget} calls, {len(search.candidates)} candidates, best {best:.3f}",
        )

    async def go() -> None:
        tracer = build_tracer(settings, store, flush_seconds=FLUSH_S)
        gateway = build_gateway(settings, store, service.catalog, tracer, make_counters(settings))
        tracer.start()
        try:
            loop = asyncio.get_running_loop()
            judge = Runner(  # lends its `chat_fn` to scorers that call a model (a judge)
                store=store,
                gateway=gateway,
                principal=principal,
                run_id=run_id,
                cases=[],
                targets=[],
                scorers=[],
                done=set(),
                concurrency=1,
                seed=suite.seed,
            )
            scorers = service.evals.build_scorers(definition, lambda name: judge.chat_fn(loop, name))
            search = Search(
                store=store,
                gateway=gateway,
                principal=principal,
                run_id=run_id,
                base=base[0],
                scorers=scorers,
                cases=cases,
                opt=opt,
                heldout=held,
                budget=run.budget,
                optimizer_model=definition["optimizer"]["model"],
                seed=suite.seed,
                concurrency=suite.concurrency,
                record=lambda c: _store_candidate(store, run_id, c, opt),
                report=report,
                log=ctx.log,
            )
            assert base[0].view is not None
            start = search.new(list(base[0].view.messages), f"the start, version {run.start_version}", None)
            await search.evaluate([start])
            search.add(start)
            with contextlib.suppress(BudgetSpent):  # the search ends when its calls do
                await optimizer.search(search)
            search.tick()
            outcome.update(await _prove(search, held))
            outcome["search"] = search
        finally:
            await gateway.close()
            await tracer.close()

    try:
        asyncio.run(go())
    except JobCancelled:
        _set(store, run_id, status="cancelled", finished_at=utcnow(), error="cancelled: no version pushed")
        raise
    except BaseException as exc:
        _set(
            store, run_id, status="failed", finished_at=utcnow(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    search: Search = outcome.pop("search")
    result = {k: v for k, v in outcome.items() if k != "candidate"}
    pushed = None
    winner: Candidate | None = outcome.get("candidate")
    if winner is not None:
        ctx.check()  # the last moment a cancel stops the run: the push below is one transaction
        scorer = next((s.name for s in suite.scorers if s.weight > 0), "score")
        message = _message(run, winner, result["heldout"], scorer)
        start_view = base[0].view
        assert start_view is not None
        spec_ = PromptSpec(
            name=run.prompt_name,
            model=start_view.model,
            params=start_view.params,
            messages=[MessageTemplate.model_validate(m) for m in winner.messages],
            output_schema=start_view.output_schema,
            message=message,
            labels=[],  # never moves a label: a person promotes it
        )
        view, _ = service.prompts.push(
            ctx.project_id, spec_, author=f"optimizer:{run.optimizer}", author_key_id=run.created_by_key_id
        )
        pushed = view.version
        result["message"] = message
    _set(
        store,
        run_id,
        status="succeeded",
        finished_at=utcnow(),
        calls=search.calls,
        dropped=search.dropped,
        result={**result, "spent": search.spent, "cached": search.cached},
        pushed_version=pushed,
    )
    return {"run_id": run_id, "pushed_version": pushed, "calls": search.calls, "dropped": search.dropped}


async def _prove(search: Search, held: list[int]) -> dict[str, Any]:
    """The winner and the start on the held-out cases (paired); runners-up too while calls remain."""
    start, opt = search.start, search.opt
    ranked = sorted(search.candidates[1:], key=lambda c: (-(c.mean(opt) or 0.0), c.seq))
    base_score = start.mean(opt) or 0.0
    result: dict[str, Any] = {
        "start_opt": start.mean(opt),
        "candidates": len(search.candidates),
        "dropped": search.dropped,
    }
    # The best candidate and the start are measured on the held-out cases either way (the reserve pays):
    # a best that did not beat the start on the optimisation cases is reported, not pushed.
    best = ranked[0] if ranked else None
    await search.evaluate([start] if best is None else [start, best], held, reserved=True)
    _store_heldout(search, held)
    a = [start.scores[i] for i in held]
    result["heldout_start"] = sum(a) / len(a)
    result["heldout_start_ci"] = bootstrap_ci(a, seed=search.seed)
    if best is None or (best.mean(opt) or 0.0) <= base_score:
        result["winner"] = None
        result["reason"] = "no candidate scored above the start on the optimisation cases; nothing pushed"
        if best is not None:
            b = [best.scores[i] for i in held]
            result["best"] = best.seq
            result["heldout_best"] = paired_test(a, b, seed=search.seed).as_dict()
        return result
    winner = best
    for extra in ranked[1:3]:  # runners-up on the held-out cases, for the console, if calls remain
        if search.cost([extra], held) <= search.left:
            await search.evaluate([extra], held)
    b = [winner.scores[i] for i in held]
    test = paired_test(a, b, seed=search.seed).as_dict()
    result.update(
        winner=winner.seq,
        winner_opt=winner.mean(opt),
        heldout=test,
        heldout_winner_ci=bootstrap_ci(b, seed=search.seed),
        candidate=winner,
    )
    _store_heldout(search, held)
    return result


def _store_heldout(search: Search, held: list[int]) -> None:
    """Each candidate's held-out scores, for those measured there."""
    with search.store.write() as session:
        for candidate in search.candidates:
            if all(i in candidate.scores for i in held):
                values = [candidate.scores[i] for i in held]
                session.execute(
                    update(PromptCandidate)
                    .where(PromptCandidate.run_id == search.run_id, PromptCandidate.seq == candidate.seq)
                    .values(
                        heldout_score=sum(values) / len(values),
                        heldout_scores={str(i): candidate.scores[i] for i in held},
                    )
                )


@job_kind(KIND, params=OptimizeParams, description="Optimise a prompt version against an eval suite")
def run_optimize(ctx: JobContext, params: OptimizeParams) -> dict[str, Any]:
    store = Store(ctx.settings.database_url)
    try:
        return execute(store, ctx.settings, ctx, params.run_id)
    finally:
        store.dispose()
