"""Dataset versions from production traffic: the trace explorer's filters, feedback's corrections.

A record copies what it takes from a span (messages, answer, tools): retention deletes spans, and a
dataset must never point into them for its content. Only `metadata.trace_id` (and the span id)
leads back, for lineage.

Chat records: the span's input messages and its answer, where the latest correction from a person
replaces the model's answer. Preference records (TRL's conversational format) come from feedback:
a correction is a better answer (chosen) against the model's (rejected); and for one input (the same
messages), an answer given a thumbs up is chosen against one given a thumbs down.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from fmops.datasets.records import RecordKind
from fmops.datasets.service import DatasetService, VersionInfo
from fmops.errors import NotFound, UserError
from fmops.store import Store
from fmops.store.models import Score, Span
from fmops.tracing.query import MAX_LIMIT, TraceFilters, TraceQuery

MAX_RECORDS = 100_000  # one version from traces; a larger one is a filter worth narrowing
PAIRS_PER_INPUT = 16  # thumbs-up x thumbs-down answers paired for one input, at most
_FILTERS = TypeAdapter(TraceFilters)
# Chat roles a record holds; OpenAI's "developer" is the system prompt of newer models.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_FILTER_FIELDS = {f.name for f in dataclasses.fields(TraceFilters)}


def parse_filter(data: Mapping[str, Any]) -> TraceFilters:
    """Trace filters from JSON (the API's body, a queue's stored filter), named as the trace search's."""
    unknown = sorted(set(data) - _FILTER_FIELDS)
    if unknown:
        raise UserError(
            f"unknown trace filter(s) {', '.join(unknown)}; use {', '.join(sorted(_FILTER_FIELDS))}",
            param="filter",
        )
    try:
        return _FILTERS.validate_python(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "filter"
        raise UserError(f"filter.{where}: {first['msg']}", param="filter") from None


def filter_json(filters: TraceFilters) -> dict[str, Any]:
    """The filters that are set, as JSON (for lineage and queues): what `parse_filter` reads back."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(filters):
        value = getattr(filters, f.name)
        if value is None or value == f.default:
            continue
        out[f.name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


@dataclass(frozen=True)
class ChatExample:
    messages: list[dict[str, Any]]  # what the model was given (system, user, ... turns)
    answer: dict[str, Any]  # the assistant message it answered with
    tools: list[Any] | None


def _message(value: Any) -> dict[str, Any] | None:
    """A chat message with text content (content parts joined), or None when it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("role"), str):
        return None
    role = _ROLES.get(value["role"])
    if role is None:  # e.g. the legacy "function" role: no record kind holds it
        return None
    content = value.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None and not value.get("tool_calls"):
        return None
    message: dict[str, Any] = {"role": role, "content": "" if content is None else str(content)}
    if value.get("tool_calls"):
        message["tool_calls"] = value["tool_calls"]
    if value.get("tool_call_id"):
        message["tool_call_id"] = value["tool_call_id"]
    return message


def answer_message(value: Any) -> dict[str, Any] | None:
    """An assistant message from a span's output or a correction (a message, content parts or text)."""
    if isinstance(value, str):
        return {"role": "assistant", "content": value} if value.strip() else None
    if isinstance(value, list):
        if value and all(isinstance(p, dict) and "role" not in p for p in value):  # content parts
            return _message({"role": "assistant", "content": value})
        value = value[0] if len(value) == 1 else None  # several choices: no one answer
    message = _message(value)
    if message is None:
        return None
    return {**message, "role": "assistant"}


def chat_example(span_input: Any, span_output: Any) -> ChatExample | None:
    """The conversation a chat span holds, or None when the span is not one (embeddings, errors)."""
    raw = span_input.get("messages") if isinstance(span_input, dict) else span_input
    if not isinstance(raw, list) or not raw:
        return None
    messages = [_message(m) for m in raw]
    answer = answer_message(span_output)
    if answer is None or any(m is None for m in messages):
        return None
    tools = span_input.get("tools") if isinstance(span_input, dict) else None
    return ChatExample(
        messages=[m for m in messages if m is not None],
        answer=answer,
        tools=tools if isinstance(tools, list) and tools else None,
    )


@dataclass
class TraceFeedback:
    """What people said about one trace: the latest correction and the latest thumbs."""

    correction: dict[str, Any] | None = None
    thumbs: float | None = None


def feedback_for(store: Store, project_id: str, trace_ids: list[str]) -> dict[str, TraceFeedback]:
    """People's corrections and thumbs on these traces (not evaluators'), the latest of each kind."""
    found: dict[str, TraceFeedback] = {}
    if not trace_ids:
        return found
    query = (
        select(Score.trace_id, Score.kind, Score.value, Score.corrected_output)
        .where(
            Score.project_id == project_id,
            Score.trace_id.in_(trace_ids),
            Score.kind.in_(("correction", "thumbs")),
            Score.source != "evaluator",
        )
        .order_by(Score.created_at, Score.id)
    )
    with store.session() as session:
        for trace_id, kind, value, corrected in session.execute(query):
            entry = found.setdefault(trace_id, TraceFeedback())
            if kind == "correction":
                entry.correction = answer_message(corrected) or entry.correction
            elif value is not None:
                entry.thumbs = value
    return found


def _metadata(span: Span, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"trace_id": span.trace_id, "span_id": span.span_id, "source": "traces"}
    for name in ("model", "endpoint", "prompt_name", "prompt_version", "variant"):
        value = getattr(span, name)
        if value is not None:
            meta[name] = value
    meta["start_time"] = span.start_time.isoformat()
    return meta | extra


@dataclass
class Counts:
    spans: int = 0  # spans read
    traces: int = 0  # distinct traces with a chat example
    not_chat: int = 0  # spans without a chat example (embeddings, errors, other shapes)
    corrected: int = 0
    records: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class TraceDatasets:
    """Builds dataset versions from the spans of one project."""

    def __init__(self, store: Store, datasets: DatasetService) -> None:
        self.store = store
        self.datasets = datasets

    def examples(
        self, project_id: str, filters: TraceFilters, counts: Counts
    ) -> Iterator[list[tuple[Span, ChatExample, TraceFeedback]]]:
        """Per page of spans: each matching trace's newest chat span, its example and its feedback."""
        query = TraceQuery(self.store)
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page = query.search(project_id, filters, limit=MAX_LIMIT, cursor=cursor, include_io=True)
            counts.spans += len(page.spans)
            batch: list[tuple[Span, ChatExample]] = []
            for span in page.spans:
                if span.trace_id in seen:
                    continue
                example = chat_example(span.input, span.output)
                if example is None:
                    counts.not_chat += 1
                    continue
                seen.add(span.trace_id)
                batch.append((span, example))
            counts.traces += len(batch)
            feedback = feedback_for(self.store, project_id, [s.trace_id for s, _ in batch])
            yield [(s, e, feedback.get(s.trace_id, TraceFeedback())) for s, e in batch]
            cursor = page.next_cursor
            if cursor is None or len(seen) >= MAX_RECORDS:
                return

    def chat_records(
        self, project_id: str, filters: TraceFilters, *, corrected_only: bool, counts: Counts
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for batch in self.examples(project_id, filters, counts):
            for span, example, feedback in batch:
                if feedback.correction is not None:
                    counts.corrected += 1
                elif corrected_only:
                    continue
                answer = feedback.correction or example.answer
                meta = _metadata(span, corrected=feedback.correction is not None)
                records.append(
                    {"messages": [*example.messages, answer], "tools": example.tools, "metadata": meta}
                )
        return records[:MAX_RECORDS]

    def preference_records(
        self, project_id: str, filters: TraceFilters, counts: Counts
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        # For thumbs pairs: per input (its messages' hash), the answers people liked and disliked.
        liked: dict[str, list[tuple[Span, ChatExample]]] = {}
        disliked: dict[str, list[tuple[Span, ChatExample]]] = {}
        for batch in self.examples(project_id, filters, counts):
            for span, example, feedback in batch:
                if feedback.correction is not None:
                    counts.corrected += 1
                    if feedback.correction.get("content") != example.answer.get("content"):
                        records.append(
                            {
                                "prompt": example.messages,
                                "chosen": [feedback.correction],
                                "rejected": [example.answer],
                                "metadata": _metadata(span, pair="correction"),
                            }
                        )
                    continue
                if feedback.thumbs is None or feedback.thumbs == 0:
                    continue
                key = hashlib.sha256(orjson.dumps(example.messages, option=orjson.OPT_SORT_KEYS)).hexdigest()
                (liked if feedback.thumbs > 0 else disliked).setdefault(key, []).append((span, example))
        for key, ups in liked.items():
            pairs = 0
            for up_span, up in ups:
                for down_span, down in disliked.get(key, []):
                    if pairs >= PAIRS_PER_INPUT or up.answer.get("content") == down.answer.get("content"):
                        continue
                    pairs += 1
                    meta = _metadata(up_span, pair="thumbs", rejected_trace_id=down_span.trace_id)
                    records.append(
                        {
                            "prompt": up.messages,
                            "chosen": [up.answer],
                            "rejected": [down.answer],
                            "metadata": meta,
                        }
                    )
        return records[:MAX_RECORDS]

    def build(
        self,
        *,
        project_id: str,
        name: str,
        filters: TraceFilters,
        corrected_only: bool = False,
        preference: bool = False,
        append: bool = False,
        created_by_key_id: str | None = None,
    ) -> tuple[VersionInfo, Counts]:
        """A new version of dataset `name` from the traces `filters` match (chat or preference records).

        With `append`, the version is the dataset's latest version plus these records (its parent);
        without, it holds these records only. A dataset that does not exist yet is created.
        """
        counts = Counts()
        if preference:
            records = self.preference_records(project_id, filters, counts)
            kind = RecordKind.preference
        else:
            records = self.chat_records(project_id, filters, corrected_only=corrected_only, counts=counts)
            kind = RecordKind.chat
        counts.records = len(records)
        if not records:
            what = (
                "preference pairs (corrections, or thumbs up and down on one input)"
                if preference
                else ("corrected traces" if corrected_only else "chat traces")
            )
            raise UserError(
                f"no {what} match the filter ({counts.spans} spans read): widen it, or give feedback first",
                param="filter",
            )
        latest = self._latest(project_id, name) if append else None
        if latest is not None and latest.kind != kind:
            raise UserError(
                f"dataset {name!r} holds {latest.kind} records, not {kind}: add to a {kind} dataset",
                param="name",
            )
        source: dict[str, Any] = {
            "type": "traces",
            "filter": filter_json(filters),
            "trace_ids": counts.traces,
            "corrected_only": corrected_only,
            "preference": preference,
        }
        if latest is not None:
            source["added_to"] = latest.ref

        def batches() -> Iterator[list[dict[str, Any]]]:
            if latest is not None:
                yield from self.datasets.iter_records(latest)
            yield records

        version = self.datasets.create_version(
            project_id=project_id,
            name=name,
            kind=kind,
            batches=batches(),
            parent_id=latest.id if latest is not None else None,
            source=source,
            counts={"in": counts.spans, "out": counts.records, "corrected": counts.corrected},
            created_by_key_id=created_by_key_id,
        )
        return version, counts

    def add_trace(
        self, *, project_id: str, name: str, trace_id: str, created_by_key_id: str | None = None
    ) -> VersionInfo:
        """A new version of `name`: its latest version's records plus this trace's example (the
        console's "Add to dataset"). A dataset that does not exist yet starts with this one record."""
        try:
            version, _ = self.build(
                project_id=project_id,
                name=name,
                filters=TraceFilters(trace_id=trace_id),
                append=True,
                created_by_key_id=created_by_key_id,
            )
        except UserError as exc:
            if exc.param != "filter":
                raise
            raise UserError(f"trace {trace_id!r} holds no chat example to add", param="trace_id") from None
        return version

    def _latest(self, project_id: str, name: str) -> VersionInfo | None:
        try:
            return self.datasets.resolve(project_id, name)
        except NotFound:  # a new dataset
            return None
