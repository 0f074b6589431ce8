"""Online evaluators: score live traces as they are committed, off the request path.

The trace writer hands each committed batch to `offer` on the event loop. There, root spans
with an output are matched against the enabled rules of their project (model, endpoint, sample
rate) and put on a bounded queue; when it is full, spans are shed and counted, never waited for.
A worker thread takes them off: cheap scorers run right there and their scores are written in
batches; rules whose scorer calls a model (the judge) collect span ids into durable jobs.

Rules are read from the database every `refresh_seconds` (so every replica sees a new rule within
that time) and at once after a change made through this process. Spans the judge itself produced
carry the attribute `fmops.evaluator` and are never evaluated, so judging cannot feed on itself.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

from fmops.evaluators.sampling import sampled
from fmops.jobs import JobService
from fmops.scorers import Case, Scorer, ScorerError, ScoreResult, ScorerUnavailable, build
from fmops.store import Store
from fmops.store.models import EvaluatorRule, Score
from fmops.tracing import TraceWriter

log = logging.getLogger(__name__)
EVALUATOR_ATTRIBUTE = "fmops.evaluator"  # on spans made by an evaluator: the rule's name
JUDGE_JOB = "evaluator.judge"
BATCH = 500  # spans scored and written per round
MAX_LABEL = 200
MAX_COMMENT = 4000


@dataclass(frozen=True)
class ActiveRule:
    """An enabled rule with its scorer built once (compiled patterns, validated schema)."""

    id: str
    project_id: str
    name: str
    model: str | None
    endpoint: str | None
    sample_rate: float
    scorer: Scorer[Any]
    created_by_key_id: str | None
    version: tuple[Any, ...]  # what the scorer was built from; rebuilt when it changes

    def wants(self, row: dict[str, Any]) -> bool:
        return (
            (self.model is None or self.model == row.get("model"))
            and (self.endpoint is None or self.endpoint == row.get("endpoint"))
            and sampled(str(row.get("trace_id", "")), self.sample_rate)
        )


def _version(rule: EvaluatorRule) -> tuple[Any, ...]:
    return (rule.scorer, orjson.dumps(rule.config or {}, option=orjson.OPT_SORT_KEYS))


def evaluable(row: dict[str, Any]) -> bool:
    """A root span with an output, not an embedding, not made by an evaluator."""
    return (
        row.get("parent_span_id") is None
        and row.get("output") is not None
        and row.get("kind") != "embedding"
        and not (row.get("attributes") or {}).get(EVALUATOR_ATTRIBUTE)
    )


def score_row(project_id: str, rule_name: str, row: dict[str, Any], result: ScoreResult) -> Score:
    """A rule's verdict on a span, as the score written on its trace (named after the rule)."""
    return Score(
        project_id=project_id,
        trace_id=row["trace_id"],
        span_id=row.get("span_id"),
        name=rule_name,
        kind="number" if result.value is not None else "label",
        value=result.value,
        label=result.label[:MAX_LABEL] if result.label else None,
        comment=result.comment[:MAX_COMMENT] if result.comment else None,
        source="evaluator",
        author=rule_name,
    )


def run_scorer(scorer: Scorer[Any], case: Case) -> ScoreResult:
    """A scorer's verdict; its failure becomes an "error" result instead of escaping, except
    ScorerUnavailable (try again later), which the caller decides about."""
    try:
        return scorer.score(case)
    except ScorerUnavailable:
        raise
    except ScorerError as exc:
        return ScoreResult.undecided("error", str(exc))
    except Exception as exc:
        log.exception("scorer failed", extra={"scorer": scorer.name})
        return ScoreResult.undecided("error", f"the scorer failed: {type(exc).__name__}: {exc}")


@dataclass
class _Pending:
    rule: ActiveRule
    since: float
    span_ids: list[str] = field(default_factory=list)


class OnlineEvaluators:
    def __init__(
        self,
        store: Store,
        jobs: JobService,
        tracer: TraceWriter,
        *,
        queue_size: int,
        refresh_seconds: float = 2.0,
        judge_batch: int = 20,
        judge_wait_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.tracer = tracer
        self.refresh_seconds = refresh_seconds
        self.judge_batch = judge_batch
        self.judge_wait_seconds = judge_wait_seconds
        self._queue: queue.Queue[tuple[dict[str, Any], list[ActiveRule]]] = queue.Queue(maxsize=queue_size)
        self._rules: dict[str, list[ActiveRule]] = {}  # by project; replaced whole, never mutated
        self._refreshed_at = float("-inf")
        self._refresh_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_shed_log = float("-inf")
        self.shed = 0  # spans not evaluated because the queue was full
        self.scored = 0
        self.judge_jobs = 0
        self.lost = 0  # scores that could not be written

    # --- service lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        try:
            await asyncio.to_thread(self.refresh)  # rules in place before the first batch arrives
        except Exception:
            log.exception("evaluator rules not loaded; will retry")
        self.tracer.subscribe(self.offer)
        self._thread = threading.Thread(target=self._run, name="fmops-evaluators", daemon=True)
        self._thread.start()

    async def close(self, timeout: float = 10.0) -> None:
        """Score what is queued (the writer has flushed by now), submit pending judge jobs, stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("online evaluators did not finish in time", extra={"queued": self._queue.qsize()})

    def refresh(self) -> None:
        """Reload the enabled rules now (after a change), rebuilding only the scorers that changed."""
        with self._refresh_lock:
            with self.store.session() as session:
                rows = list(session.scalars(select(EvaluatorRule).where(EvaluatorRule.enabled.is_(True))))
            known = {r.id: r for rules in self._rules.values() for r in rules}
            fresh: dict[str, list[ActiveRule]] = {}
            for row in rows:
                active = self._activate(row, known.get(row.id))
                if active is not None:
                    fresh.setdefault(row.project_id, []).append(active)
            self._rules = fresh
            self._refreshed_at = time.monotonic()

    def _activate(self, row: EvaluatorRule, before: ActiveRule | None) -> ActiveRule | None:
        version = _version(row)
        if before is not None and before.version == version:
            scorer = before.scorer
        else:
            try:
                scorer = build(row.scorer, row.config)
            except Exception as exc:
                log.error("evaluator rule cannot run; skipped", extra={"rule": row.name, "error": str(exc)})
                return None
        return ActiveRule(
            id=row.id,
            project_id=row.project_id,
            name=row.name,
            model=row.model,
            endpoint=row.endpoint,
            sample_rate=row.sample_rate,
            scorer=scorer,
            created_by_key_id=row.created_by_key_id,
            version=version,
        )

    # --- on the event loop: cheap, never blocks --------------------------------------------------

    def offer(self, rows: Sequence[dict[str, Any]]) -> None:
        """Called by the trace writer with each committed batch: queue what some rule wants."""
        rules = self._rules
        if not rules:
            return
        for row in rows:
            candidates = rules.get(row.get("project_id", ""))
            if not candidates or not evaluable(row):
                continue
            wanted = [r for r in candidates if r.wants(row)]
            if not wanted:
                continue
            try:
                self._queue.put_nowait((row, wanted))
            except queue.Full:
                self._shed()

    def _shed(self) -> None:
        self.shed += 1
        now = time.monotonic()
        if now - self._last_shed_log > 10:
            self._last_shed_log = now
            log.warning("online evaluators are behind; shedding spans", extra={"shed": self.shed})

    # --- in the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = self._take()
            stopping = self._stop.is_set()
            if stopping and not items:
                break
            try:
                if items:
                    self._process(items)  # with the rules they were matched against
                self._submit_judges(force=stopping)
                if time.monotonic() - self._refreshed_at >= self.refresh_seconds:
                    self.refresh()
            except Exception:
                log.exception("online evaluation round failed")
                if stopping:
                    break
                self._stop.wait(0.5)  # e.g. the database is away: do not spin
        self._submit_judges(force=True)

    def _take(self) -> list[tuple[dict[str, Any], list[ActiveRule]]]:
        try:
            items = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(items) < BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _process(self, items: list[tuple[dict[str, Any], list[ActiveRule]]]) -> None:
        scores: list[Score] = []
        for row, rules in items:
            case: Case | None = None
            for rule in rules:
                if rule.scorer.needs_model:
                    self._queue_judge(rule, row)
                    continue
                case = case or Case.from_span(row)
                try:
                    result = run_scorer(rule.scorer, case)
                except ScorerUnavailable as exc:  # nothing to retry with inline: say so on the trace
                    result = ScoreResult.undecided("unavailable", str(exc))
                scores.append(score_row(rule.project_id, rule.name, row, result))
        if not scores:
            return
        try:
            with self.store.session() as session:
                session.add_all(scores)
        except Exception as exc:
            self.lost += len(scores)
            log.warning(
                "evaluator scores not written", extra={"scores": len(scores), "error": str(exc)[:200]}
            )
            return
        self.scored += len(scores)

    def _queue_judge(self, rule: ActiveRule, row: dict[str, Any]) -> None:
        pending = self._pending.get(rule.id)
        if pending is None:
            pending = self._pending[rule.id] = _Pending(rule, time.monotonic())
        pending.span_ids.append(str(row["span_id"]))

    def _submit_judges(self, *, force: bool) -> None:
        now = time.monotonic()
        for rule_id, pending in list(self._pending.items()):
            full = len(pending.span_ids) >= self.judge_batch
            if not (force or full or now - pending.since >= self.judge_wait_seconds):
                continue
            del self._pending[rule_id]
            for start in range(0, len(pending.span_ids), self.judge_batch):
                ids = pending.span_ids[start : start + self.judge_batch]
                try:
                    self.jobs.submit(
                        JUDGE_JOB,
                        {"rule_id": rule_id, "span_ids": ids},
                        project_id=pending.rule.project_id,
                        created_by_key_id=pending.rule.created_by_key_id,
                    )
                except Exception as exc:
                    self.lost += len(ids)
                    log.warning(
                        "judge job not queued", extra={"rule": pending.rule.name, "error": str(exc)[:200]}
                    )
                    continue
                self.judge_jobs += 1

    # --- metrics ------------------------------------------------------------------------------------

    def collector(self) -> Collector:
        return _Collector(self)


class _Collector(Collector):
    def __init__(self, runner: OnlineEvaluators) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        r = self.runner
        yield GaugeMetricFamily(
            "fmops_evaluator_queue_depth", "Spans waiting for online evaluators", value=r._queue.qsize()
        )
        yield CounterMetricFamily(
            "fmops_evaluator_shed", "Spans not evaluated because the evaluator queue was full", value=r.shed
        )
        yield CounterMetricFamily(
            "fmops_evaluator_scores", "Scores written by online evaluators", value=r.scored
        )
        yield CounterMetricFamily(
            "fmops_evaluator_judge_jobs", "Judge jobs queued by online evaluators", value=r.judge_jobs
        )
        yield CounterMetricFamily(
            "fmops_evaluator_lost", "Scores or judge batches lost (database unreachable)", value=r.lost
        )
