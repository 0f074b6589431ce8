"""The `evaluator.judge` job: score a batch of spans with a rule whose scorer calls a model.

Online evaluators queue one per rule and batch of sampled spans; an engineer may also queue one
(POST /api/jobs) to judge chosen spans again. Each score is written as soon as it is known and a
span the rule already scored is skipped, so a retried or resumed job never scores a span twice.
Calls run as the rule's creator (their key's and the project's limits and budgets apply).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select

from fmops.auth import Principal, Role
from fmops.evaluators.judge_runtime import JudgeRuntime
from fmops.evaluators.online import JUDGE_JOB, run_scorer, score_row
from fmops.jobs import JobContext, RetryableJobError, job_kind
from fmops.scorers import Case, ScorerUnavailable, build
from fmops.store.models import ApiKey, EvaluatorRule, Project, Score, Span, User

Id = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9a-zA-Z]+$")]


class JudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_id: Id
    span_ids: list[Id] = Field(min_length=1, max_length=500)


def _principal(session: Any, rule: EvaluatorRule) -> Principal:
    project = session.get(Project, rule.project_id)
    key = session.get(ApiKey, rule.created_by_key_id) if rule.created_by_key_id else None
    user = session.get(User, key.user_id) if key is not None else None
    return Principal(
        key_id=key.id if key is not None else "",
        user_id=user.id if user is not None else "",
        user_name=f"evaluator:{rule.name}",
        project_id=project.id,
        project_name=project.name,
        role=Role.engineer,
        key_rpm=key.rpm_limit if key is not None else None,
        key_tpm=key.tpm_limit if key is not None else None,
        key_budget=key.budget if key is not None else None,
        key_budget_period=key.budget_period if key is not None else "month",
        project_rpm=project.rpm_limit,
        project_tpm=project.tpm_limit,
        project_budget=project.budget,
        project_budget_period=project.budget_period,
    )


def _span_row(span: Span) -> dict[str, Any]:
    return {
        c: getattr(span, c)
        for c in ("trace_id", "span_id", "model", "endpoint", "user", "session_id", "input", "output")
    }


@job_kind(
    JUDGE_JOB,
    params=JudgeParams,
    description="Judge spans with an evaluator rule's model-calling scorer and record the scores",
)
def judge(ctx: JobContext, params: JudgeParams) -> dict[str, Any]:
    runtime = JudgeRuntime.shared(ctx.settings)
    store = runtime.store
    with store.session() as session:
        rule = session.get(EvaluatorRule, params.rule_id)
        if rule is None or rule.project_id != ctx.project_id:
            ctx.log(f"evaluator {params.rule_id} no longer exists; nothing to judge", "warning")
            return {"scored": 0, "skipped": len(params.span_ids), "reason": "evaluator deleted"}
        principal = _principal(session, rule)
        spans = list(
            session.scalars(
                select(Span).where(Span.project_id == ctx.project_id, Span.span_id.in_(params.span_ids))
            )
        )
        done = set(
            session.scalars(
                select(Score.span_id).where(
                    Score.project_id == ctx.project_id,
                    Score.name == rule.name,
                    Score.source == "evaluator",
                    Score.span_id.in_(params.span_ids),
                )
            )
        )
    todo = [s for s in spans if s.span_id not in done]
    values: list[float] = []
    for index, span in enumerate(todo):
        ctx.check()
        row = _span_row(span)
        scorer = build(rule.scorer, rule.config, chat=runtime.chat_fn(principal, rule.name, span.trace_id))
        try:
            result = run_scorer(scorer, Case.from_span(row))
        except ScorerUnavailable as exc:
            runtime.flush()
            raise RetryableJobError(str(exc)) from None
        with store.session() as session:
            session.add(score_row(ctx.project_id, rule.name, row, result))
        if result.value is not None:
            values.append(result.value)
        ctx.progress((index + 1) / len(todo), f"judged {index + 1}/{len(todo)}")
    runtime.flush()
    return {
        "scored": len(todo),
        "already_scored": len(done),
        "missing": len(params.span_ids) - len(spans),
        "mean": sum(values) / len(values) if values else None,
    }
