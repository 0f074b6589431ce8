"""The loop of a fine-tuned model, walked from its alias: the traces its data came from, each dataset
version down to the one it was trained on, the fine-tune job, the model, the eval runs that called
it, the experiments it runs in and the promotions that decided them.

Every node carries its id (or ref) and the path of its console page, so the API, the console and the
CLI show one chain and each step is a link. Missing links are normal (a model nobody evaluated yet):
the loop holds what exists. A model no fine-tune produced has no loop (404).

Read only, from the store: the `finetunes` row is the root (what the job recorded with the model);
dataset versions are walked through `parent_id`; eval runs are matched on the targets they resolved
(a model target, or a prompt on the model); endpoints on their current config and on their events
(each change keeps the config after it: the arms before a promotion, and the model it left serving).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import TypeAdapter
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from fmops.catalog.builtin import builtin_models
from fmops.endpoints.experiments import report
from fmops.errors import Conflict, NotFound
from fmops.store import Store
from fmops.store.models import (
    CatalogModel,
    Dataset,
    DatasetVersion,
    Endpoint,
    EndpointEvent,
    EvalRun,
    Finetune,
    Job,
)

__all__ = [
    "DatasetNode",
    "EndpointNode",
    "EvalNode",
    "ExperimentArm",
    "ExperimentNode",
    "FinetuneNode",
    "Loop",
    "ModelNode",
    "PromotionNode",
    "TracesNode",
    "finetuned_aliases",
    "loop_path",
    "model_loop",
    "traces_path",
]

EVAL_RUNS_LOOKED_AT = 200  # newest runs naming the alias that are read; older ones are left out
MAX_VERSIONS = 100  # dataset versions walked back from the trained one (a guard against a long chain)
# The query parameters the traces explorer reads (console_traces_view.read_query), by filter name;
# a filter not here cannot be carried by the URL and is listed in `left_out`. This layer cannot import
# the console's own link builder (console_data_view.traces_link): tests/finetune/test_loop.py checks
# that both give the same link.
_EXPLORER_TEXT = (
    "model",
    "endpoint",
    "user",
    "session_id",
    "prompt_name",
    "variant",
    "q",
    "status",
    "feedback",
)
_EXPLORER_INT = ("prompt_version",)


def loop_path(alias: str) -> str:
    """The console page of a model's loop (the path the quickstart prints)."""
    return f"/console/models/{quote(alias, safe='/')}/loop"


def traces_path(filters: dict[str, Any]) -> tuple[str, list[str]]:
    """The traces explorer filtered as `filters` (a version's stored trace filter): the path, and the
    filters its URL cannot carry (a time window, a score). One trace links to its own page."""
    trace = filters.get("trace_id")
    if isinstance(trace, str) and trace.isalnum():
        return f"/console/traces/{trace}", sorted(k for k in filters if k != "trace_id")
    params: dict[str, str] = {}
    left_out = []
    for key, value in filters.items():
        if key == "root_only" or value in (None, "", [], ()):
            continue
        if key in _EXPLORER_TEXT and isinstance(value, str):
            params[key] = value
        elif key in _EXPLORER_INT and isinstance(value, int) and not isinstance(value, bool):
            params[key] = str(value)
        elif key == "tags" and isinstance(value, list | tuple) and all(isinstance(t, str) for t in value):
            params[key] = ",".join(value)  # the explorer's Tags field: comma-separated, all must match
        else:
            left_out.append(key)
    if not filters.get("root_only"):
        params["spans"] = "all"  # the explorer lists top-level spans only unless told otherwise
    return "/console/traces" + (f"?{urlencode(params)}" if params else ""), sorted(left_out)


@dataclass(frozen=True, slots=True)
class TracesNode:
    """Traces a dataset version took its records from: directly (from-traces) or through a queue."""

    dataset_version_id: str  # the version these traces went into
    via: str  # "traces" (a from-traces version) or "annotation" (a queue's export)
    filter: dict[str, Any]
    traces: int | None  # traces that gave a record, counted when the version was built
    url: str
    left_out: list[str] = field(default_factory=list)  # filters the explorer's URL cannot carry
    queue: str | None = None  # the annotation queue's name, and its page
    queue_url: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetNode:
    id: str
    ref: str  # name@version
    name: str
    version: int
    kind: str
    rows: int
    parent_id: str | None
    source: str  # traces | annotation | curation | import | ...
    step: str | None  # the curation step that made it (dedup, pii, filter, ...)
    counts: dict[str, Any]
    created_at: datetime
    url: str


@dataclass(frozen=True, slots=True)
class FinetuneNode:
    job_id: str
    status: str
    method: str
    base: str
    dataset_version_id: str | None
    dataset_ref: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    url: str


@dataclass(frozen=True, slots=True)
class ModelNode:
    alias: str
    id: str | None  # None once removed from the catalog (the lineage outlives it)
    in_catalog: bool
    provider: str | None
    base: str
    url: str


@dataclass(frozen=True, slots=True)
class EvalNode:
    run_id: str
    suite: str
    status: str
    target: str  # the target's name in the suite
    target_index: int
    score: float | None  # the target's mean weighted score, once the run has a summary
    ci: list[float] | None
    n: int | None
    passed: bool | None  # every scorer with a threshold met it (None: no thresholds, or no summary)
    created_at: datetime
    url: str


@dataclass(frozen=True, slots=True)
class EndpointNode:
    name: str
    enabled: bool
    serves_as: list[str]  # "model" and/or "variant:<name>": how it serves the model now
    url: str


@dataclass(frozen=True, slots=True)
class ExperimentArm:
    name: str
    model: str | None
    weight: float
    calls: int
    uses_model: bool


@dataclass(frozen=True, slots=True)
class ExperimentNode:
    endpoint: str
    started_at: datetime
    control: str
    variants: list[ExperimentArm]
    primary_metric: str
    winner: str | None
    verdict: str
    url: str


@dataclass(frozen=True, slots=True)
class PromotionNode:
    endpoint: str
    variant: str
    model: str | None  # the promoted variant's model: what the endpoint serves since
    this_model: bool  # the fine-tuned model won (else it was an arm that lost)
    actor: str | None
    at: datetime
    note: str | None
    url: str


@dataclass(frozen=True, slots=True)
class Loop:
    """The chain, in order: traces -> dataset versions (oldest first) -> fine-tune -> model -> eval
    runs (newest first) -> endpoints and their experiments -> promotions (newest first)."""

    model: ModelNode
    finetune: FinetuneNode
    traces: list[TracesNode]
    datasets: list[DatasetNode]
    evals: list[EvalNode]
    endpoints: list[EndpointNode]
    experiments: list[ExperimentNode]
    promotions: list[PromotionNode]
    url: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON, exactly as the API's response (FastAPI serializes the dataclass with pydantic)."""
        out: dict[str, Any] = _AS_JSON.dump_python(self, mode="json")
        return out


_AS_JSON: TypeAdapter[Loop] = TypeAdapter(Loop)


def finetuned_aliases(store: Store, project_id: str) -> set[str]:
    """Aliases of the project's models a fine-tune produced: the ones that have a loop."""
    with store.session() as session:
        return set(session.scalars(select(Finetune.model_alias).where(Finetune.project_id == project_id)))


def model_loop(store: Store, project_id: str, alias: str) -> Loop:
    """The loop of the model `alias` of a project; NotFound when no fine-tune produced it."""
    with store.session() as session:
        row = session.scalars(
            select(Finetune)
            .where(Finetune.project_id == project_id, Finetune.model_alias == alias)
            .order_by(Finetune.created_at.desc())
        ).first()
        if row is None:
            raise NotFound(_not_produced(session, project_id, alias), param="alias")
        job = session.get(Job, row.job_id)
        entry = session.scalars(
            select(CatalogModel).where(CatalogModel.project_id == project_id, CatalogModel.alias == alias)
        ).first()
        finetune = _finetune(row, job)
        # The row points at the model it registered; a model removed and added again is another one.
        current = entry is not None and row.model_id == entry.id
        model = ModelNode(
            alias=alias,
            id=row.model_id,
            in_catalog=current,
            provider=entry.provider if entry is not None and current else None,
            base=row.base,
            url="/console/models",
        )
        # Nothing before the job started can have called this model (an older one of the same alias could).
        since = job.created_at if job is not None else row.created_at
        versions = _versions(session, project_id, row.dataset_version_id)
        evals = _evals(session, project_id, alias, since)
        endpoints, arms = _endpoints(session, project_id, alias)
        promotions = _promotions(session, project_id, alias, since)
    traces = [node for v, source in versions for node in _traces(v.id, source)]
    experiments = [_experiment(store, project_id, e, arms[e.name]) for e in endpoints if arms.get(e.name)]
    return Loop(
        model=model,
        finetune=finetune,
        traces=traces,
        datasets=[v for v, _ in versions],
        evals=evals,
        endpoints=endpoints,
        experiments=[e for e in experiments if e is not None],
        promotions=promotions,
        url=loop_path(alias),
    )


def _not_produced(session: Session, project_id: str, alias: str) -> str:
    known = any(m.alias == alias for m in builtin_models()) or session.scalar(
        select(CatalogModel.id).where(CatalogModel.project_id == project_id, CatalogModel.alias == alias)
    )
    tail = "" if known else " (nor is it in this project's catalog)"
    return (
        f"model {alias!r} was not produced by a fine-tune{tail}: a loop starts at a fine-tune's model; "
        "see `fmops finetune list` or GET /api/finetunes"
    )


def _finetune(row: Finetune, job: Job | None) -> FinetuneNode:
    return FinetuneNode(
        job_id=row.job_id,
        status=job.status if job is not None else "succeeded",
        method=row.method,
        base=row.base,
        dataset_version_id=row.dataset_version_id,
        dataset_ref=row.dataset_ref,
        config=dict(row.config or {}),
        metrics=dict(row.metrics or {}),
        created_at=row.created_at,
        finished_at=job.finished_at if job is not None else None,
        url=f"/console/finetunes/{row.job_id}",
    )


def _versions(
    session: Session, project_id: str, version_id: str | None
) -> list[tuple[DatasetNode, dict[str, Any]]]:
    """The trained version and its ancestors, oldest first, each with its stored source. A deleted
    dataset ends the chain where it was (its children keep the parent's id, not its rows)."""
    chain: list[tuple[DatasetNode, dict[str, Any]]] = []
    seen: set[str] = set()
    current = version_id
    while current is not None and current not in seen and len(chain) < MAX_VERSIONS:
        seen.add(current)
        found = session.execute(
            select(Dataset, DatasetVersion)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id == current, Dataset.project_id == project_id)
        ).first()
        if found is None:
            break
        dataset, version = found
        source = dict(version.source or {})
        step = next(iter(version.step), None) if isinstance(version.step, dict) and version.step else None
        chain.append(
            (
                DatasetNode(
                    id=version.id,
                    ref=f"{dataset.name}@{version.version}",
                    name=dataset.name,
                    version=version.version,
                    kind=version.kind,
                    rows=version.rows,
                    parent_id=version.parent_id,
                    source=str(source.get("type") or "unknown"),
                    step=str(step) if step is not None else None,
                    counts=dict(version.counts or {}),
                    created_at=version.created_at,
                    url=f"/console/data/{quote(dataset.name, safe='')}/versions/{version.version}",
                ),
                source,
            )
        )
        current = version.parent_id
    chain.reverse()
    return chain


def _traces(version_id: str, source: dict[str, Any]) -> list[TracesNode]:
    kind = source.get("type")
    if kind not in ("traces", "annotation"):
        return []
    found = source.get("filter")
    filters: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    url, left_out = traces_path(filters)
    count = source.get("trace_ids")
    queue_id = source.get("queue_id")
    return [
        TracesNode(
            dataset_version_id=version_id,
            via=str(kind),
            filter=filters,
            traces=count if isinstance(count, int) and not isinstance(count, bool) else None,
            url=url,
            left_out=left_out,
            queue=str(source["queue"]) if kind == "annotation" and source.get("queue") else None,
            queue_url=f"/console/annotation/{queue_id}"
            if kind == "annotation" and isinstance(queue_id, str) and queue_id.isalnum()
            else None,
        )
    ]


def _resolved_targets(definition: dict[str, Any]) -> list[tuple[int, str, str | None, str]]:
    """(index, name, model, kind) of each target as the run resolved it; an lm-evaluation-harness run
    records no resolved targets, only its suite's one model target."""
    resolved = definition.get("targets")
    if isinstance(resolved, list) and resolved:
        return [
            (i, str(t.get("name")), t.get("model"), str(t.get("kind") or "model"))
            for i, t in enumerate(resolved)
            if isinstance(t, dict)
        ]
    suite = definition.get("suite")
    targets = suite.get("targets") if isinstance(suite, dict) else None
    out = []
    for i, t in enumerate(targets if isinstance(targets, list) else []):
        if isinstance(t, dict):
            kind = "endpoint" if t.get("endpoint") else ("prompt" if t.get("prompt") else "model")
            out.append((i, str(t.get("name")), t.get("model"), kind))
    return out


def _headline(summary: Any, index: int) -> tuple[float | None, list[float] | None, int | None, bool | None]:
    """A target's mean weighted score, its interval and count, and whether it met every threshold."""
    targets = summary.get("targets") if isinstance(summary, dict) else None
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, dict) or target.get("index") != index:
            continue
        found = target.get("score")
        score: dict[str, Any] = found if isinstance(found, dict) else {}
        mean, ci, n = score.get("mean"), score.get("ci"), score.get("n")
        verdicts = [
            s.get("passed")
            for s in (target.get("scorers") or {}).values()
            if isinstance(s, dict) and s.get("passed") is not None
        ]
        return (
            float(mean) if isinstance(mean, int | float) else None,
            [float(x) for x in ci] if isinstance(ci, list) and len(ci) == 2 and None not in ci else None,
            int(n) if isinstance(n, int) else None,
            all(verdicts) if verdicts else None,
        )
    return None, None, None, None


def _evals(session: Session, project_id: str, alias: str, since: datetime) -> list[EvalNode]:
    """Runs since the model was registered whose targets called it, newest first. The alias in the
    definition's text narrows the rows read in SQL; the resolved targets decide."""
    runs = session.scalars(
        select(EvalRun)
        .where(
            EvalRun.project_id == project_id,
            EvalRun.created_at >= since,
            cast(EvalRun.definition, Text).contains(alias, autoescape=True),
        )
        .order_by(EvalRun.id.desc())
        .limit(EVAL_RUNS_LOOKED_AT)
    )
    found = []
    for run in runs:
        for index, name, model, kind in _resolved_targets(dict(run.definition or {})):
            # An endpoint target's "model" is the endpoint's name: not this model, even if it serves it.
            if model != alias or kind == "endpoint":
                continue
            score, ci, n, passed = _headline(run.summary, index)
            found.append(
                EvalNode(
                    run_id=run.id,
                    suite=run.suite_name,
                    status=run.status,
                    target=name,
                    target_index=index,
                    score=score,
                    ci=ci,
                    n=n,
                    passed=passed,
                    created_at=run.created_at,
                    url=f"/console/evals/runs/{run.id}",
                )
            )
    return found


def _endpoint_url(name: str) -> str:
    return f"/console/endpoints/{quote(name, safe='')}"


def _endpoints(session: Session, project_id: str, alias: str) -> tuple[list[EndpointNode], dict[str, Arms]]:
    """Endpoints that serve the model now (as their model, or a variant's), and the config of each
    one whose experiment has an arm on the model."""
    rows = session.scalars(
        select(Endpoint).where(Endpoint.project_id == project_id).order_by(Endpoint.name)
    ).all()
    nodes, experiments = [], {}
    for row in rows:
        config = dict(row.config or {})
        arms = _arms(config)
        serves = ["model"] if config.get("model") == alias else []
        serves += [f"variant:{name}" for name, model in arms.items() if model == alias]
        if not serves:
            continue
        nodes.append(EndpointNode(row.name, bool(row.enabled), serves, _endpoint_url(row.name)))
        if alias in arms.values():
            experiments[row.name] = arms
    return nodes, experiments


Arms = dict[str, str | None]  # variant name -> the model it calls


def _arms(config: dict[str, Any]) -> Arms:
    """Each variant of an endpoint config and the model it calls: its own, else the endpoint's."""
    own = config.get("model")
    return {
        str(v.get("name")): (str(v.get("model") or own) if v.get("model") or own else None)
        for v in config.get("variants") or []
        if isinstance(v, dict)
    }


def _experiment(store: Store, project_id: str, endpoint: EndpointNode, arms: Arms) -> ExperimentNode | None:
    try:
        result = report(store, project_id, endpoint.name)
    except (Conflict, NotFound):  # changed or deleted since it was read: no experiment to show
        return None
    variants = [
        ExperimentArm(v.name, arms.get(v.name), v.weight, v.calls, f"variant:{v.name}" in endpoint.serves_as)
        for v in result.variants
    ]
    return ExperimentNode(
        endpoint=endpoint.name,
        started_at=result.started_at,
        control=result.control,
        variants=variants,
        primary_metric=result.primary_metric,
        winner=result.winner,
        verdict=result.verdict,
        url=endpoint.url,
    )


def _promotions(session: Session, project_id: str, alias: str, since: datetime) -> list[PromotionNode]:
    """Promotions since the model was registered, on endpoints where it was an arm or won; newest first.

    Every change event keeps the endpoint's config after it, so the arms a promotion decided between
    are those of the config the event before it left (a model that came after the arms were set
    cannot be one of them: an endpoint names only models that exist)."""
    pairs = session.execute(
        select(Endpoint.name, EndpointEvent)
        .join(Endpoint, Endpoint.id == EndpointEvent.endpoint_id)
        .where(Endpoint.project_id == project_id, EndpointEvent.created_at >= since)
        .order_by(EndpointEvent.created_at, EndpointEvent.id)
    ).all()
    found: list[PromotionNode] = []
    arms_of: dict[str, Arms] = {}
    for name, event in pairs:
        detail = dict(event.detail or {})
        config = detail.get("config") if isinstance(detail.get("config"), dict) else None
        if event.kind == "promoted" and config is not None:
            after = config.get("model")
            if after == alias or alias in arms_of.get(name, {}).values():
                note = detail.get("note")
                found.append(
                    PromotionNode(
                        endpoint=name,
                        variant=str(detail.get("variant")),
                        model=str(after) if after else None,
                        this_model=after == alias,
                        actor=event.actor,
                        at=event.created_at,
                        note=note if isinstance(note, str) else None,
                        url=_endpoint_url(name),
                    )
                )
        if config is not None:
            arms_of[name] = _arms(config)
    found.reverse()
    return found
