"""A fine-tuned model's whole loop, built with the real services (no training, no model calls):
chat traces -> a from-traces dataset version -> a curation step -> a fine-tune's job, catalog model
and lineage row (what the `finetune` job writes when it succeeds) -> an eval run with scored
results -> an endpoint whose experiment promoted the model, and one whose experiment still runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fmops.artifacts import ArtifactStore
from fmops.catalog import ModelSpec
from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.curation.recipe import load_recipe
from fmops.curation.runner import CurationRun
from fmops.datasets import DatasetService, VersionInfo
from fmops.datasets.from_traces import TraceDatasets
from fmops.endpoints.experiments import promote
from fmops.endpoints.schemas import EndpointSpec
from fmops.endpoints.service import EndpointService
from fmops.evals.service import EvalService, case_key
from fmops.finetune.job import KIND, FinetuneParams
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.platform import Platform
from fmops.prompts.service import PromptService
from fmops.store import utcnow
from fmops.store.models import EvalResult, EvalRun, Finetune, Job, Span
from fmops.tracing.query import TraceFilters

MODEL = "tickets-ft"
TRACED_MODEL = "small"  # what answered the traces the data came from
QUESTIONS = ["Where is order 1?", "Where is order 2?", "Can I return shoes?", "Where is order 1?"]
ACTOR = "eve"


@dataclass
class LoopWorld:
    project_id: str
    job_id: str
    traced: VersionInfo  # tickets@1, from the traces
    curated: VersionInfo  # tickets@2, exact duplicates removed
    run_id: str  # the eval run that called the model


def _traces(platform: Platform, project_id: str) -> None:
    """Chat calls as the gateway records them; one question asked twice, and one of another model."""
    with platform.store.session() as session:
        for i, (question, model) in enumerate([(q, TRACED_MODEL) for q in QUESTIONS] + [("hi", "other")]):
            session.add(
                Span(
                    span_id=new_span_id(),
                    trace_id=new_trace_id(),
                    project_id=project_id,
                    name=f"chat {model}",
                    start_time=utcnow() - timedelta(minutes=10 - i),
                    model=model,
                    user="customer",
                    input={"messages": [{"role": "user", "content": question}]},
                    output={"role": "assistant", "content": f"Answer to: {question}"},
                    attributes={},
                )
            )


def finetune(platform: Platform, project_id: str, version: VersionInfo, alias: str = MODEL) -> str:
    """What a succeeded `finetune` job leaves: the job, the catalog model, the lineage row."""
    params = FinetuneParams(base=DEFAULT_CHAT_MODEL, dataset=version.id, name=alias)
    now = utcnow()
    metrics = {"final_loss": 1.25, "steps": 4, "train_records": version.rows}
    folder = platform.settings.home / "finetunes" / alias
    with platform.store.write() as session:
        job = Job(
            project_id=project_id,
            kind=KIND,
            params=params.model_dump(mode="json"),
            status="succeeded",
            progress=1.0,
            attempts=1,
            created_at=now - timedelta(minutes=2),
            started_at=now - timedelta(minutes=2),
            finished_at=now,
            result={
                "model": alias,
                "dataset": version.ref,
                "dataset_version_id": version.id,
                "metrics": metrics,
            },
        )
        session.add(job)
    spec = ModelSpec(
        alias=alias, provider="llamacpp", model=str(folder / "model.gguf"), options={"n_ctx": 2048}
    )
    entry = platform.catalog.add(project_id, spec, trusted=True)
    with platform.store.write() as session:
        session.add(
            Finetune(
                job_id=job.id,
                project_id=project_id,
                model_id=entry.id,
                model_alias=alias,
                base=DEFAULT_CHAT_MODEL,
                method="sft",
                dataset_version_id=version.id,
                dataset_ref=version.ref,
                config={"max_steps": 4, "lora": {"r": 4}},
                metrics=metrics,
                artifacts={"run_dir": str(folder), "gguf": str(folder / "model.gguf")},
            )
        )
    return job.id


def _eval_run(platform: Platform, project_id: str, datasets: DatasetService) -> str:
    """A finished run of the model against its base, recorded as `EvalService.start` records one, its
    results scored, and summarised by the service (exact match: the model 2 of 3, the base 1 of 3)."""
    evals = EvalService(platform.store, platform.catalog, platform.jobs, lambda: datasets)
    cases = [{"input": q, "expected": f"Answer to: {q}"} for q in QUESTIONS[:3]]
    raw = {
        "name": "tickets-eval",
        "cases": cases,
        "targets": [{"model": MODEL}, {"model": DEFAULT_CHAT_MODEL, "name": "base"}],
        "scorers": [{"name": "exact_match", "threshold": 0.5}],
    }
    suite, targets, _ = evals.check(project_id, raw)
    definition = {
        "suite": suite.as_dict(),
        "dataset": None,
        "targets": [
            {"name": t.name, "kind": t.spec.kind, "model": t.model, "prompt_version": t.prompt_version}
            for t in targets
        ],
    }
    with platform.store.write() as session:
        run = EvalRun(
            project_id=project_id,
            suite_name=suite.name,
            definition=definition,
            status="running",
            cases=len(cases),
            targets=len(targets),
        )
        session.add(run)
        session.flush()
        for c, case in enumerate(cases):
            for t, right in enumerate((c < 2, c < 1)):
                value = 1.0 if right else 0.0
                session.add(
                    EvalResult(
                        run_id=run.id,
                        case_index=c,
                        target_index=t,
                        case_key=case_key(case["input"], case["expected"]),
                        input=case["input"],
                        expected=case["expected"],
                        output=case["expected"] if right else "no idea",
                        status="ok",
                        scores={"exact_match": {"value": value}},
                        score=value,
                    )
                )
    evals.finish(run.id)
    return run.id


def _endpoints(platform: Platform, project_id: str) -> None:
    """`tickets`: the model won its A/B test and was promoted; `tickets-canary`: its test still runs;
    `other`: never served it."""
    service = EndpointService(
        platform.store, platform.catalog, PromptService(platform.store, platform.catalog)
    )

    def create(name: str, variants: list[dict[str, Any]]) -> None:
        spec = EndpointSpec.model_validate({"name": name, "model": DEFAULT_CHAT_MODEL, "variants": variants})
        service.create(project_id, spec, actor=ACTOR)

    create("tickets", [{"name": "base"}, {"name": "tuned", "model": MODEL}])
    promote(service, project_id, "tickets", "tuned", actor=ACTOR, note="better exact match")
    create("tickets-canary", [{"name": "control", "weight": 9}, {"name": "candidate", "model": MODEL}])
    create("other", [])


def build_loop(platform: Platform, project_id: str) -> LoopWorld:
    datasets = DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))
    _traces(platform, project_id)
    traced, _ = TraceDatasets(platform.store, datasets).build(
        project_id=project_id, name="tickets", filters=TraceFilters(model=TRACED_MODEL)
    )
    recipe = load_recipe({"steps": [{"dedup": {"method": "exact"}}]})
    [curated] = CurationRun(datasets=datasets, project_id=project_id, recipe=recipe).run(traced)
    job_id = finetune(platform, project_id, curated)
    run_id = _eval_run(platform, project_id, datasets)
    _endpoints(platform, project_id)
    return LoopWorld(project_id, job_id, traced, curated, run_id)
