"""Batch inference's unit of work: a chunk of records answered through a gateway, as the job's key.

`answer_chunk` runs wherever the executor puts it: in the job's process (local) or in a Ray worker.
It builds its own in-process gateway from the same recipe as the server's (`fmops.gateway.stack`),
so each call has the key's limits, budgets, cache and traces, and every span is tagged
`job:<job id>` with the record's row in `fmops.job.row`. What it returns is plain data: the chunk's
output records (chat records: the input as sent, then the answer) in the input's order.

A record whose call fails (after retries for 429/502/503/504) or whose input does not fit the
target is kept, marked: its messages end with the input, and `metadata.inference.status` is
`error` with the reason. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from fmops.auth import AuthService, Principal
from fmops.catalog import Catalog
from fmops.counters import make_counters
from fmops.datasets.records import RecordKind
from fmops.errors import FmopsError, UserError
from fmops.evals.job import service_for
from fmops.evals.suite import Suite, TargetSpec
from fmops.evals.targets import Target, TargetResolver
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.service import Gateway
from fmops.gateway.spans import CallRecord
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.scorers.base import text_of
from fmops.settings import Settings, load_settings
from fmops.store import Store

JSON = dict[str, Any]
JOB_TAG_PREFIX = "job:"  # each call's span is tagged job:<job id>
JOB_ATTRIBUTE = "fmops.job.id"
ROW_ATTRIBUTE = "fmops.job.row"
TRANSIENT = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_BACKOFF_S = 20.0
# A chunk answered in the job's own process (the local executor) reports to its job by id:
# `watch(records just answered)` counts them for the progress and raises when the job must stop, so
# a cancel is seen between calls, not only between chunks. A Ray worker has none.
WATCHES: dict[str, Callable[[int], None]] = {}


# --- records in, records out ----------------------------------------------------------------------


def case_input(kind: RecordKind, record: Mapping[str, Any]) -> tuple[Any, Any]:
    """(what is answered, what the record already held as its answer, or None).

    chat: the messages without the trailing assistant turn(s) (those become the reference);
    completion: the prompt (its completion is the reference); preference: the prompt messages;
    eval: the input (its expected value is the reference)."""
    if kind is RecordKind.chat:
        messages = list(record["messages"])
        answer: list[str] = []
        while messages and messages[-1].get("role") == "assistant":
            answer.insert(0, str(messages.pop().get("content") or ""))
        return messages, ("\n".join(answer) if answer else None)
    if kind is RecordKind.completion:
        return record["prompt"], record.get("completion")
    if kind is RecordKind.preference:
        return list(record["prompt"]), None
    return record["input"], record.get("expected")


def usable(value: Any) -> bool:
    """An input the gateway can answer: non-empty text, or messages with a user turn."""
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return any(isinstance(m, dict) and m.get("role") == "user" for m in value)
    return False


def _conversation(value: Any) -> list[JSON]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [dict(m) for m in value]


def _variables(metadata: Mapping[str, Any]) -> JSON:
    """A prompt's variables from a record: its scalar metadata fields, then `metadata.variables`."""
    values: JSON = {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool)}
    given = metadata.get("variables")
    if isinstance(given, dict):
        values.update(given)
    return values


def output_record(
    kind: RecordKind,
    row: int,
    record: Mapping[str, Any],
    sent: list[JSON],
    answer: JSON | None,
    facts: JSON,
) -> JSON:
    """The chat record written for one input record: what was sent, then the answer (when there is
    one); the input's metadata, its row, its reference answer, and `inference` (how it went)."""
    _, reference = case_input(kind, record)
    metadata: JSON = dict(record.get("metadata") or {})
    metadata["row"] = row
    if reference is not None:
        metadata["reference"] = reference
    metadata["inference"] = facts
    messages = [_message(m) for m in sent]
    if answer is not None:
        messages.append(answer)
    tools = record.get("tools") if kind is RecordKind.chat else None
    return {"messages": messages, "tools": tools, "metadata": metadata}


def _message(message: Mapping[str, Any]) -> JSON:
    kept = {
        k: v for k, v in message.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")
    }
    if not isinstance(kept.get("content"), str):
        kept["content"] = text_of(kept.get("content"))
    return kept


# --- one chunk ------------------------------------------------------------------------------------


def resolve_target(resolver: TargetResolver, project_id: str, spec: Mapping[str, Any]) -> Target:
    suite = Suite(name="infer", targets=[TargetSpec(**spec)], scorers=[])
    problems: list[str] = []
    found = resolver.resolve(project_id, suite, problems)
    if problems:
        raise UserError("; ".join(p.removeprefix("targets.0.") for p in problems), param="target")
    return found[0]


def answer_chunk(task: Mapping[str, Any]) -> JSON:
    """Answer one chunk: `{"records": [...], "ok": n, "error": m}`. `task` holds plain data only
    (settings, project, key id, target spec, job id, parameters, rows), so it can cross to a Ray worker."""
    settings = load_settings(task["settings"])
    store = Store(settings.database_url)
    try:
        evals = service_for(store, settings)
        principal = AuthService(store, cache_seconds=0).job_caller(
            task["key_id"], task["project_id"], task.get("member")
        )
        if principal.project_id != task["project_id"]:
            raise FmopsError("the job's key belongs to another project")
        target = resolve_target(evals.targets, task["project_id"], task["target"])
        records = asyncio.run(_answer(store, settings, evals.catalog, principal, target, task))
    finally:
        store.dispose()
    errors = sum(1 for r in records if r["metadata"]["inference"]["status"] != "ok")
    return {"records": records, "ok": len(records) - errors, "error": errors}


async def _answer(
    store: Store,
    settings: Settings,
    catalog: Catalog,
    principal: Principal,
    target: Target,
    task: Mapping[str, Any],
) -> list[JSON]:
    tracer = build_tracer(settings, store)
    gateway = build_gateway(settings, store, catalog, tracer, make_counters(settings))
    tracer.start()
    kind = RecordKind(task["kind"])
    slots = asyncio.Semaphore(int(task.get("concurrency", 8)))
    jitter = random.Random(int(task["rows"][0][0]) if task["rows"] else 0)  # noqa: S311 (back-off only)

    watch = WATCHES.get(str(task["job_id"]))

    async def one(row: int, record: JSON) -> JSON:
        async with slots:
            if watch is not None:
                watch(0)  # raises when the job must stop: the chunk ends here
            answered = await _one(gateway, principal, target, task, kind, row, record, jitter)
        if watch is not None:
            watch(1)
        return answered

    calls = [asyncio.ensure_future(one(row, record)) for row, record in task["rows"]]
    try:
        return list(await asyncio.gather(*calls))
    except BaseException:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        raise
    finally:
        await gateway.close()
        await tracer.close()  # every call's span is stored before the chunk says it is done


async def _one(
    gateway: Gateway,
    principal: Principal,
    target: Target,
    task: Mapping[str, Any],
    kind: RecordKind,
    row: int,
    record: JSON,
    jitter: random.Random,
) -> JSON:
    value, _ = case_input(kind, record)
    conversation = _conversation(value if value is not None else "")
    facts: JSON = {"status": "error", "error": None, "target": target.name, "trace_id": None}
    if not usable(value):
        facts["error"] = "the record has no input to answer (no user message or empty text)"
        return output_record(kind, row, record, conversation, None, facts)
    metadata = {"variables": _variables(record.get("metadata") or {})}
    try:
        body = target.request(value, int(task.get("seed") or 0), metadata)
    except FmopsError as exc:
        facts["error"] = f"the record does not fit the target: {exc.message}"
        return output_record(kind, row, record, conversation, None, facts)
    if task.get("seed") is None:
        body.pop("seed", None)
    sent = list(body.get("messages") or []) or conversation
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        facts["error"] = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return output_record(kind, row, record, sent, None, facts)
    traced: list[CallRecord] = []

    def tag(call: CallRecord) -> None:
        call.attributes[JOB_ATTRIBUTE] = task["job_id"]
        call.attributes[ROW_ATTRIBUTE] = row
        call.tags = (*call.tags, f"{JOB_TAG_PREFIX}{task['job_id']}")  # the trace explorer finds the job
        if target.view is not None:
            call.prompt_name, call.prompt_version = target.view.name, target.view.version
        traced.append(call)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            result = await gateway.chat(principal, request, annotate=tag)
        except FmopsError as exc:
            if exc.status_code in TRANSIENT and attempt < MAX_ATTEMPTS:
                await asyncio.sleep(_backoff(attempt, getattr(exc, "retry_after", None), jitter))
                continue
            facts["error"] = f"{exc.status_code}: {exc.message}"
            facts["trace_id"] = exc.trace_id or (traced[-1].trace_id if traced else None)
            return output_record(kind, row, record, sent, None, facts)
        choice = (result.body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        answer: JSON = {"role": "assistant", "content": text_of(message.get("content"))}
        if message.get("tool_calls"):
            answer["tool_calls"] = message["tool_calls"]
        call = result.record
        facts.update(
            status="ok",
            trace_id=call.trace_id,
            finish_reason=choice.get("finish_reason"),
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cost=call.cost,
        )
        return output_record(kind, row, record, sent, answer, facts)
    raise AssertionError("unreachable: the last attempt returns")


def _backoff(attempt: int, retry_after: float | None, jitter: random.Random) -> float:
    if retry_after is not None and 0 <= retry_after < MAX_BACKOFF_S:
        return float(retry_after) + jitter.uniform(0, 0.1)
    return float(min(MAX_BACKOFF_S, 0.25 * 2.0 ** (attempt - 1)) * jitter.uniform(0.8, 1.2))
