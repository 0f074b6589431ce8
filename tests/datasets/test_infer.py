"""Batch inference (`datasets.infer`) on each database, through an in-process gateway against the mock
upstream: every record answered as the job's key into a new chat version whose records carry the
input, the answer and the trace; failures kept and counted; bad requests refused before queuing;
a cancel leaves no version; an interrupted job resumes after the chunks it had answered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from evals.conftest import EvalWorld
from fmops.datasets import VersionInfo
from fmops.datasets import infer as batch
from fmops.endpoints.schemas import EndpointSpec
from fmops.endpoints.service import EndpointService
from fmops.errors import Conflict, NotFound, UserError
from fmops.jobs import JobContext, JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.platform import Platform
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from fmops.store.models import Job, Span, SpanTag
from support.mock_upstream import MockUpstream

REPLY = "Hello from the mock upstream."


@pytest.fixture
def world(platform: Platform, mock: MockUpstream) -> Iterator[EvalWorld]:
    key = platform.auth.bootstrap(platform.settings.home / "admin.key")
    assert key is not None
    mock.reset()
    w = EvalWorld(platform, platform.auth.authenticate(key), mock)
    w.add_model("mock-a", input_price=1.0, output_price=2.0)
    yield w
    mock.reset()


def add(world: EvalWorld, name: str, kind: str, records: list[dict[str, Any]]) -> VersionInfo:
    return world.platform.datasets.create_version(
        project_id=world.project, name=name, kind=kind, batches=[records] if records else []
    )


def submit(world: EvalWorld, dataset: str, **options: Any) -> Job:
    p = world.platform
    return batch.submit(
        p.store,
        p.settings,
        p.jobs,
        p.datasets,
        project_id=world.project,
        dataset=dataset,
        created_by_key_id=world.principal.key_id,
        **options,
    )


def execute(world: EvalWorld, job: Job) -> Job:
    """Claim the job and run it here, as a worker does; the job as it ended."""
    service = JobService(world.platform.store)
    worker = Worker(service, world.platform.settings, threading.Event())
    claimed = service.claim(worker.worker_id, [batch.KIND])
    assert claimed is not None
    assert claimed.id == job.id
    worker.execute(claimed)
    return service.get(job.id, None)


def rows(world: EvalWorld, ref: str) -> list[dict[str, Any]]:
    datasets = world.platform.datasets
    return [r for b in datasets.iter_records(datasets.resolve(world.project, ref)) for r in b]


def conversation(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Answer the ticket."},
            {"role": "user", "content": f"ticket {i}: my card was charged twice"},
            {"role": "assistant", "content": "an old answer"},
        ],
        "metadata": {"id": i},
    }


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_every_record_is_answered_into_a_new_chat_version_linked_to_its_traces(
    world: EvalWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 3)  # three chunks: parts written, read back in order
    start = add(world, "tickets", "chat", [conversation(i) for i in range(7)])
    job = submit(world, "tickets", model="mock-a", parameters={"max_tokens": 16, "temperature": 0})
    assert job.params["output"] == "tickets"  # a chat dataset's answers are its next version
    done = execute(world, job)
    assert done.status == JobStatus.succeeded, done.error
    assert done.result is not None
    assert {k: v for k, v in done.result.items() if k != "version_id"} == {
        "input": "tickets@1",
        "output": "tickets@2",
        "records": 7,
        "ok": 7,
        "errors": 0,
    }
    made = world.platform.datasets.resolve(world.project, "tickets@2")
    assert made.parent_id == start.id
    assert made.counts == {"in": 7, "out": 7, "ok": 7, "error": 0}
    assert made.source["type"] == "inference"
    assert made.source["job_id"] == job.id
    assert made.source["model"] == "mock-a"
    out = rows(world, "tickets@2")
    assert [r["messages"] for r in out] == [
        [*conversation(i)["messages"][:2], {"role": "assistant", "content": REPLY}] for i in range(7)
    ]
    meta = out[3]["metadata"]
    assert meta["id"] == 3
    assert meta["row"] == 3
    assert meta["reference"] == "an old answer"
    assert meta["inference"]["status"] == "ok"
    assert meta["inference"]["output_tokens"] == len(REPLY.split())
    # What reached the upstream: the conversation without its old answer, with the parameters.
    sent = world.mock.state.requests
    assert len(sent) == 7
    assert all(r["body"]["max_tokens"] == 16 and r["body"]["temperature"] == 0 for r in sent)
    assert sorted(r["body"]["messages"][-1]["content"] for r in sent) == sorted(
        f"ticket {i}: my card was charged twice" for i in range(7)
    )
    # Each answer's trace is stored, tagged with the job, as the job's key.
    with world.platform.store.session() as session:
        tagged = set(session.scalars(select(SpanTag.span_id).where(SpanTag.tag == f"job:{job.id}")))
        spans = list(session.scalars(select(Span).where(Span.span_id.in_(tagged))))
    assert {s.trace_id for s in spans} == {r["metadata"]["inference"]["trace_id"] for r in out}
    assert {s.key_id for s in spans} == {world.principal.key_id}
    assert world.platform.datasets.artifacts.keys(batch.PARTS) == []  # the parts are gone


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_prompt_fills_variables_from_each_record_and_failures_are_kept_and_counted(
    world: EvalWorld,
) -> None:
    prompts = PromptService(world.platform.store, world.platform.catalog)
    spec = PromptSpec(
        name="triage",
        model="mock-a",
        messages=[
            {"role": "system", "content": "You triage {{ product }} tickets."},
            {"role": "user", "content": "{{ input }}"},
        ],
    )
    view, _ = prompts.push(world.project, spec, author="t", author_key_id=None)
    prompts.set_label(world.project, "triage", "production", view.version, actor="t")
    cases = [{"input": f"case {i}", "expected": "billing", "metadata": {"product": "card"}} for i in range(4)]
    cases.append({"input": "case 4", "expected": "billing"})  # no product: the prompt cannot be filled
    add(world, "triage-eval", "eval", cases)
    job = submit(world, "triage-eval", prompt="triage@production", output="triage-answers")
    done = execute(world, job)
    assert done.status == JobStatus.succeeded, done.error
    assert done.result is not None
    assert (done.result["ok"], done.result["errors"], done.result["output"]) == (4, 1, "triage-answers@1")
    out = rows(world, "triage-answers@1")
    assert len(out) == 5  # the failed record is kept, marked
    assert out[0]["messages"] == [
        {"role": "system", "content": "You triage card tickets."},
        {"role": "user", "content": "case 0"},
        {"role": "assistant", "content": REPLY},
    ]
    assert out[0]["metadata"]["reference"] == "billing"
    failed = out[4]
    assert failed["messages"] == [{"role": "user", "content": "case 4"}]
    assert failed["metadata"]["inference"]["status"] == "error"
    assert "product" in failed["metadata"]["inference"]["error"]
    made = world.platform.datasets.resolve(world.project, "triage-answers@1")
    assert made.counts["error"] == 1
    assert len(world.mock.state.requests) == 4

    # An upstream that refuses: every record is kept, marked with the status it answered.
    world.add_model("refuses", "always-400")
    job = submit(world, "triage-eval", model="refuses", output="refused")
    done = execute(world, job)
    assert done.result is not None
    assert (done.result["ok"], done.result["errors"]) == (0, 5)
    assert {r["metadata"]["inference"]["error"][:4] for r in rows(world, "refused@1")} == {"400:"}

    # An endpoint answers with its own prompt and model.
    EndpointService(world.platform.store, world.platform.catalog, prompts).create(
        world.project, EndpointSpec(name="triager", prompt="triage", label="production"), actor="t"
    )
    job = submit(world, "triage-eval@1", endpoint="triager", output="by-endpoint")
    done = execute(world, job)
    assert done.result is not None
    assert (done.result["ok"], done.result["errors"]) == (4, 1)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_bad_requests_are_clear_and_queue_nothing(world: EvalWorld) -> None:
    add(world, "tickets", "chat", [conversation(i) for i in range(2)])
    add(world, "empty", "chat", [])
    add(world, "evals", "eval", [{"input": "q", "expected": "a"}])
    add(world, "no-question", "chat", [conversation(0), {"messages": [{"role": "system", "content": "x"}]}])
    cases: list[tuple[type[Exception], dict[str, Any], str]] = [
        (NotFound, {"dataset": "nope", "model": "mock-a"}, "no dataset 'nope'"),
        (NotFound, {"dataset": "tickets@9", "model": "mock-a"}, "has no version 9"),
        (NotFound, {"dataset": "tickets", "model": "mock-b"}, "no model 'mock-b'"),
        (NotFound, {"dataset": "tickets", "endpoint": "nowhere"}, "no endpoint 'nowhere'"),
        (UserError, {"dataset": "tickets"}, "name a model"),
        (UserError, {"dataset": "tickets", "endpoint": "x", "model": "mock-a"}, "endpoint alone"),
        (UserError, {"dataset": "tickets", "prompt": "nope@production"}, "no prompt 'nope'"),
        (UserError, {"dataset": "empty", "model": "mock-a"}, "empty@1 has no records to answer"),
        (UserError, {"dataset": "no-question", "model": "mock-a"}, "1 of 2 records of no-question@1 have"),
        (UserError, {"dataset": "tickets", "model": "mock-a", "parameters": {"temprature": 1}}, "temprature"),
        (UserError, {"dataset": "tickets", "model": "mock-a", "output": "bad name"}, "invalid dataset name"),
        (Conflict, {"dataset": "tickets", "model": "mock-a", "output": "evals"}, "holds eval records"),
    ]
    for error, options, message in cases:
        with pytest.raises(error, match=message):
            submit(world, **options)
    p = world.platform
    with pytest.raises(UserError, match="calls models as a key"):
        batch.submit(
            p.store, p.settings, p.jobs, p.datasets, project_id=world.project, dataset="tickets",
            created_by_key_id=None, model="mock-a",
        )  # fmt: skip
    assert world.platform.jobs.find(project_id=world.project, kind=batch.KIND) == []


def cancel_when(world: EvalWorld, records: int, seen: Callable[[Job], bool]) -> Job:
    """Answer `records` records one at a time on a slow model (0.1 s a call) in a worker thread,
    cancel the job once `seen(job)` holds, and check that it ended cancelled with no version made."""
    world.add_model("slow", "slow-100")
    add(world, "tickets", "chat", [conversation(i) for i in range(records)])
    settings = world.platform.settings.model_copy(update={"job_heartbeat_seconds": 0.1})
    job = submit(world, "tickets", model="slow", output="slow-answers", concurrency=1)
    service = JobService(world.platform.store)
    worker = Worker(service, settings, threading.Event())
    claimed = service.claim(worker.worker_id, [batch.KIND])
    assert claimed is not None
    running = threading.Thread(target=worker.execute, args=(claimed,))
    running.start()
    deadline = time.monotonic() + 30
    while not seen(found := service.get(job.id, None)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    service.cancel(job.id, world.project)
    running.join(30)
    assert service.get(job.id, None).status == JobStatus.cancelled
    with pytest.raises(NotFound):
        world.platform.datasets.dataset(world.project, "slow-answers")
    return found


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_cancel_leaves_no_version_and_no_parts(world: EvalWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 2)
    cancel_when(world, 20, lambda job: bool((job.state or {}).get("parts")))  # a chunk answered and kept
    assert len(world.mock.state.requests) < 20
    assert world.platform.datasets.artifacts.keys(batch.PARTS) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_in_the_jobs_process_progress_moves_and_a_cancel_stops_between_calls(
    world: EvalWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "PROGRESS_S", 0.1)
    # One chunk of 40 (of 64 at most): its answers are counted before the chunk is done.
    seen = cancel_when(world, 40, lambda job: job.progress >= 0.1)
    assert "answered" in (seen.message or "")
    calls = len(world.mock.state.requests)
    assert calls < 30  # 40 calls of 0.1 s one at a time: stopped inside the chunk
    time.sleep(0.5)
    assert len(world.mock.state.requests) == calls


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_interrupted_job_resumes_after_the_chunks_it_had_answered(
    world: EvalWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 2)
    add(world, "tickets", "chat", [conversation(i) for i in range(6)])
    job = submit(world, "tickets", model="mock-a", output="answers")
    real = JobContext.checkpoint

    def shut_down_after_one(ctx: JobContext, state: dict[str, Any]) -> None:
        real(ctx, state)
        if state["parts"] == 1:
            ctx.stop("shutdown")  # as the worker's heartbeat does when `fmops up` stops

    monkeypatch.setattr(JobContext, "checkpoint", shut_down_after_one)
    first = execute(world, job)
    assert first.status == JobStatus.queued  # queued again, to resume
    assert first.state == {"parts": 1, "ok": 2, "error": 0}
    assert len(world.mock.state.requests) == 2
    artifacts = world.platform.datasets.artifacts
    assert len(artifacts.keys(batch.PARTS)) == 1
    # `fmops data sweep` removes the chunks of a job that will not resume, not those of this one.
    orphan = f"{batch.PARTS}/{world.project}/{'0' * 32}/part-000000.jsonl"
    with artifacts.open_write(orphan) as sink:
        sink.write(b"{}\n")
    assert batch.sweep_parts(world.platform.store, artifacts, older_than_seconds=0) == [orphan]
    assert len(artifacts.keys(batch.PARTS)) == 1
    monkeypatch.setattr(JobContext, "checkpoint", real)
    done = execute(world, job)
    assert done.status == JobStatus.succeeded, done.error
    assert len(world.mock.state.requests) == 6  # the first chunk was not asked again
    out = rows(world, "answers@1")
    assert [r["metadata"]["row"] for r in out] == list(range(6))
    assert all(r["messages"][-1]["content"] == REPLY for r in out)
    logs = [log.line for log in JobService(world.platform.store).logs(job.id, None)]
    assert any("resuming after 2 records" in line for line in logs)
