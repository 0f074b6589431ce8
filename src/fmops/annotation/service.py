"""Annotation queues: made from a trace filter by engineers, worked through by annotators.

Who sees what: engineers (and admins) every queue of their project; an annotator the queues of their
project that name them, or name nobody. Any other queue, and every queue of another project, answers
404: it is invisible, not forbidden.

Each item is decided by `overlap` people. A person's decision is also feedback on the trace, through
the FeedbackService: accept is a thumbs up, correct a correction, each label a label score (a skip
says nothing about the answer and records none). The queue's export is a dataset version of chat
records, the corrected answer where someone corrected it, labels in the metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from fmops.annotation.agreement import Agreement, agreement
from fmops.annotation.schemas import Action, DecisionCreate, LabelField, QueueCreate
from fmops.auth import Principal, Role
from fmops.datasets.from_traces import chat_example, filter_json, parse_filter
from fmops.datasets.records import RecordKind
from fmops.datasets.service import DatasetService, VersionInfo
from fmops.errors import Conflict, NotFound, UserError
from fmops.evaluators.sampling import sampled
from fmops.feedback import FeedbackService, parse_feedback
from fmops.store import Store
from fmops.store.models import AnnotationDecision, AnnotationItem, AnnotationQueue
from fmops.tracing import TraceWriter
from fmops.tracing.query import MAX_LIMIT, TraceQuery

VERDICT = "verdict"  # the pseudo-field whose agreement is accept vs correct


@dataclass(frozen=True)
class Progress:
    total: int
    done: int  # decided by `overlap` people (accepted or corrected)
    skipped: int  # not done, and skipped by someone
    remaining: int  # neither
    mine_done: int = 0  # the asking person's decisions (accept or correct)
    mine_skipped: int = 0
    mine_remaining: int = 0  # items still open that they have not decided


@dataclass(frozen=True)
class QueueView:
    queue: AnnotationQueue
    progress: Progress

    @property
    def fields(self) -> list[LabelField]:
        return [LabelField.model_validate(f) for f in self.queue.label_schema]


class AnnotationService:
    def __init__(
        self, store: Store, tracer: TraceWriter | None = None, datasets: DatasetService | None = None
    ) -> None:
        self.store = store
        self.tracer = tracer
        self.datasets = datasets

    # --- queues ---------------------------------------------------------------------------------

    def create(self, principal: Principal, body: QueueCreate) -> QueueView:
        principal.require(Role.engineer, "create annotation queues")
        filters = parse_filter(body.filter)
        with self.store.session() as session:
            taken = session.scalar(
                select(AnnotationQueue.id).where(
                    AnnotationQueue.project_id == principal.project_id, AnnotationQueue.name == body.name
                )
            )
        if taken:
            raise Conflict(f"an annotation queue named {body.name!r} exists in this project", param="name")
        items = self._sample(principal.project_id, filters, body.sampling_rate, body.max_items)
        if not items:
            raise UserError(
                "no chat traces match the filter at this sampling rate: widen the filter or raise the rate",
                param="filter",
            )
        queue = AnnotationQueue(
            project_id=principal.project_id,
            name=body.name,
            description=body.description,
            filter=filter_json(filters),
            sampling_rate=body.sampling_rate,
            label_schema=[f.model_dump() for f in body.label_schema],
            overlap=body.overlap,
            annotators=list(body.annotators),
            dataset=body.dataset or body.name,
            created_by=principal.user_name,
        )
        try:
            with self.store.session() as session:
                session.add(queue)
                session.flush()
                for position, item in enumerate(items):
                    session.add(
                        AnnotationItem(
                            queue_id=queue.id, project_id=queue.project_id, position=position, **item
                        )
                    )
        except IntegrityError:
            raise Conflict(
                f"an annotation queue named {body.name!r} exists in this project", param="name"
            ) from None
        return self.view(principal, queue.id)

    def _sample(self, project_id: str, filters: Any, rate: float, limit: int) -> list[dict[str, Any]]:
        """The newest matching chat spans, one per trace, sampled by trace id (the same traces every time)."""
        query = TraceQuery(self.store)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        cursor: str | None = None
        while len(items) < limit:
            page = query.search(project_id, filters, limit=MAX_LIMIT, cursor=cursor, include_io=True)
            for span in page.spans:
                if span.trace_id in seen or not sampled(span.trace_id, rate):
                    continue
                if chat_example(span.input, span.output) is None:
                    continue
                seen.add(span.trace_id)
                # Copied: retention deleting the span takes nothing from the queue.
                items.append(
                    {
                        "trace_id": span.trace_id,
                        "span_id": span.span_id,
                        "input": span.input,
                        "output": span.output,
                    }
                )
                if len(items) >= limit:
                    break
            cursor = page.next_cursor
            if cursor is None:
                break
        return items

    def _visible(self, principal: Principal, queue: AnnotationQueue | None) -> bool:
        if queue is None or queue.project_id != principal.project_id:
            return False
        if principal.role.covers(Role.engineer):
            return True
        return principal.role.covers(Role.annotator) and (
            not queue.annotators or principal.user_name in queue.annotators
        )

    def get(self, principal: Principal, ref: str) -> AnnotationQueue:
        """A queue by id or name; 404 when it does not exist or is not this person's to see."""
        with self.store.session() as session:
            queue = session.get(AnnotationQueue, ref) if len(ref) == 32 else None
            if queue is None:
                queue = session.scalar(
                    select(AnnotationQueue).where(
                        AnnotationQueue.project_id == principal.project_id, AnnotationQueue.name == ref
                    )
                )
        if not self._visible(principal, queue):
            raise NotFound(f"no annotation queue {ref!r} in this project", param="queue")
        assert queue is not None
        return queue

    def view(self, principal: Principal, ref: str) -> QueueView:
        queue = self.get(principal, ref)
        return QueueView(queue, self.progress(queue, principal))

    def queues(self, principal: Principal) -> list[QueueView]:
        with self.store.session() as session:
            queues = list(
                session.scalars(
                    select(AnnotationQueue)
                    .where(AnnotationQueue.project_id == principal.project_id)
                    .order_by(AnnotationQueue.created_at.desc(), AnnotationQueue.id.desc())
                )
            )
        return [QueueView(q, self.progress(q, principal)) for q in queues if self._visible(principal, q)]

    def delete(self, principal: Principal, ref: str) -> None:
        principal.require(Role.engineer, "delete annotation queues")
        queue = self.get(principal, ref)
        with self.store.session() as session:
            found = session.get(AnnotationQueue, queue.id)
            if found is not None:
                session.delete(found)

    # --- items and decisions --------------------------------------------------------------------

    def _decisions(self, queue_id: str) -> list[AnnotationDecision]:
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(AnnotationDecision)
                    .where(AnnotationDecision.queue_id == queue_id)
                    .order_by(AnnotationDecision.created_at, AnnotationDecision.id)
                )
            )

    def progress(self, queue: AnnotationQueue, principal: Principal | None = None) -> Progress:
        with self.store.session() as session:
            total = session.scalar(select(func.count()).where(AnnotationItem.queue_id == queue.id)) or 0
        decided: Counter[str] = Counter()
        skipped_items: set[str] = set()
        mine_done = mine_skipped = 0
        mine: set[str] = set()
        for d in self._decisions(queue.id):
            if d.action == Action.skip:
                skipped_items.add(d.item_id)
            else:
                decided[d.item_id] += 1
            if principal is not None and d.user_id == principal.user_id:
                mine.add(d.item_id)
                if d.action == Action.skip:
                    mine_skipped += 1
                else:
                    mine_done += 1
        done_items = {item for item, n in decided.items() if n >= queue.overlap}
        skipped = len(skipped_items - done_items)
        done = len(done_items)
        mine_remaining = total - len(done_items | mine)
        return Progress(
            total=total,
            done=done,
            skipped=skipped,
            remaining=total - done - skipped,
            mine_done=mine_done,
            mine_skipped=mine_skipped,
            mine_remaining=max(mine_remaining, 0),
        )

    def next_item(self, principal: Principal, ref: str) -> AnnotationItem | None:
        """The first item this person has not decided that still needs people (None: nothing left)."""
        queue = self.get(principal, ref)
        complete = (
            select(AnnotationDecision.item_id)
            .where(AnnotationDecision.queue_id == queue.id, AnnotationDecision.action != Action.skip.value)
            .group_by(AnnotationDecision.item_id)
            .having(func.count() >= queue.overlap)
        )
        mine = select(AnnotationDecision.item_id).where(
            AnnotationDecision.queue_id == queue.id, AnnotationDecision.user_id == principal.user_id
        )
        with self.store.session() as session:
            return session.scalar(
                select(AnnotationItem)
                .where(
                    AnnotationItem.queue_id == queue.id,
                    AnnotationItem.id.not_in(complete),
                    AnnotationItem.id.not_in(mine),
                )
                .order_by(AnnotationItem.position)
                .limit(1)
            )

    def item(self, principal: Principal, ref: str, item_id: str) -> AnnotationItem:
        queue = self.get(principal, ref)
        with self.store.session() as session:
            item = session.get(AnnotationItem, item_id)
        if item is None or item.queue_id != queue.id:
            raise NotFound(f"no item {item_id!r} in annotation queue {queue.name!r}", param="item_id")
        return item

    def decide(
        self, principal: Principal, ref: str, item_id: str, body: DecisionCreate
    ) -> AnnotationDecision:
        """Record this person's decision on an item, and the feedback it is on the trace."""
        principal.require(Role.annotator, "annotate")
        queue = self.get(principal, ref)
        item = self.item(principal, ref, item_id)
        if body.action == Action.correct and not (body.corrected_output or "").strip():
            raise UserError(
                "correct needs corrected_output: the answer it should have been", param="corrected_output"
            )
        if body.action != Action.correct and body.corrected_output is not None:
            raise UserError(
                f"corrected_output is only for correct, not {body.action.value}", param="corrected_output"
            )
        labels = self._check_labels(queue, body)
        corrected = {"role": "assistant", "content": body.corrected_output} if body.corrected_output else None
        decision = AnnotationDecision(
            item_id=item.id,
            queue_id=queue.id,
            user_id=principal.user_id,
            user_name=principal.user_name,
            action=body.action.value,
            corrected_output=corrected,
            labels=labels,
        )
        try:
            with self.store.session() as session:
                session.add(decision)
        except IntegrityError:
            raise Conflict(
                f"you have already decided item {item.id} of this queue", param="item_id"
            ) from None
        self._feedback(principal, queue, item, body, labels)
        return decision

    def _check_labels(self, queue: AnnotationQueue, body: DecisionCreate) -> dict[str, str]:
        fields = {f["name"]: f for f in queue.label_schema}
        for name, value in body.labels.items():
            field = fields.get(name)
            if field is None:
                known = ", ".join(fields) or "none"
                raise UserError(
                    f"label {name!r} is not in this queue's schema (its fields: {known})", param="labels"
                )
            if value not in field["values"]:
                allowed = ", ".join(field["values"])
                raise UserError(f"label {name}={value!r} is not one of {allowed}", param="labels")
        if body.action != Action.skip:
            missing = [n for n, f in fields.items() if f.get("required") and n not in body.labels]
            if missing:
                raise UserError(f"label(s) {', '.join(missing)} required by this queue", param="labels")
        return dict(body.labels)

    def _feedback(
        self,
        principal: Principal,
        queue: AnnotationQueue,
        item: AnnotationItem,
        body: DecisionCreate,
        labels: dict[str, str],
    ) -> None:
        if body.action == Action.skip:
            return
        scores: list[dict[str, Any]] = []
        base = {"trace_id": item.trace_id, "span_id": item.span_id}
        if body.action == Action.accept:
            scores.append({**base, "kind": "thumbs", "value": 1})
        else:
            corrected = {"role": "assistant", "content": body.corrected_output}
            scores.append({**base, "kind": "correction", "corrected_output": corrected})
        scores += [{**base, "kind": "label", "name": name, "label": value} for name, value in labels.items()]
        feedback = FeedbackService(self.store, self.tracer)
        for score in scores:
            score["comment"] = f"annotation queue {queue.name}" if score["kind"] != "correction" else None
            try:
                feedback.record(principal, parse_feedback({k: v for k, v in score.items() if v is not None}))
            except NotFound:
                return  # retention deleted the trace: the decision (and the copied example) still count

    # --- agreement and export -------------------------------------------------------------------

    def agreement(self, queue: AnnotationQueue) -> list[Agreement]:
        """Cohen's kappa per label field (and for accept vs correct) over items several people decided."""
        per_item: dict[str, list[AnnotationDecision]] = {}
        for d in self._decisions(queue.id):
            if d.action != Action.skip:
                per_item.setdefault(d.item_id, []).append(d)
        shared = [ds for ds in per_item.values() if len(ds) >= 2]
        results = [agreement(VERDICT, [[d.action for d in ds] for ds in shared])]
        for field in queue.label_schema:
            name = field["name"]
            results.append(
                agreement(name, [[d.labels[name] for d in ds if name in d.labels] for ds in shared])
            )
        return results

    def records(self, queue: AnnotationQueue) -> Iterator[dict[str, Any]]:
        """Chat records of the decided items: the corrected answer where there is one; labels in metadata."""
        per_item: dict[str, list[AnnotationDecision]] = {}
        for d in self._decisions(queue.id):
            if d.action != Action.skip:
                per_item.setdefault(d.item_id, []).append(d)
        with self.store.session() as session:
            items = list(
                session.scalars(
                    select(AnnotationItem)
                    .where(AnnotationItem.queue_id == queue.id)
                    .order_by(AnnotationItem.position)
                )
            )
        for item in items:
            decisions = per_item.get(item.id)
            example = chat_example(item.input, item.output)
            if not decisions or example is None:
                continue
            corrections = [d for d in decisions if d.action == Action.correct]
            answer = corrections[-1].corrected_output if corrections else example.answer
            labels: dict[str, str] = {}
            for field in queue.label_schema:  # the value most people gave (ties: the earliest)
                given = [d.labels[field["name"]] for d in decisions if field["name"] in d.labels]
                if given:
                    labels[field["name"]] = Counter(given).most_common(1)[0][0]
            yield {
                "messages": [*example.messages, answer],
                "tools": example.tools,
                "metadata": {
                    "trace_id": item.trace_id,
                    "span_id": item.span_id,
                    "source": "annotation",
                    "queue": queue.name,
                    "corrected": bool(corrections),
                    "labels": labels,
                    "annotators": [
                        {"user": d.user_name, "action": d.action, "labels": d.labels} for d in decisions
                    ],
                },
            }

    def export(self, principal: Principal, ref: str, dataset: str | None = None) -> VersionInfo:
        """A new version of the queue's dataset from what people decided so far."""
        principal.require(Role.engineer, "export annotation queues")
        if self.datasets is None:
            raise RuntimeError("AnnotationService.export needs a DatasetService")
        queue = self.get(principal, ref)
        records = list(self.records(queue))
        if not records:
            raise UserError(
                f"nobody has accepted or corrected an item of queue {queue.name!r} yet: nothing to export",
                param="queue",
            )
        return self.datasets.create_version(
            project_id=principal.project_id,
            name=dataset or queue.dataset,
            kind=RecordKind.chat,
            batches=[records],
            source={"type": "annotation", "queue_id": queue.id, "queue": queue.name, "filter": queue.filter},
            counts={"in": self.progress(queue).total, "out": len(records)},
            created_by_key_id=principal.key_id or None,  # the CLI's operator has no key
        )
