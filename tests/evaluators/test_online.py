"""The online runner on both backends, fed by the real trace writer: which spans get which scores."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from fmops.catalog import ModelSpec
from fmops.evaluators import JUDGE_JOB, EvaluatorService, OnlineEvaluators, RuleCreate
from fmops.evaluators.online import EVALUATOR_ATTRIBUTE
from fmops.evaluators.sampling import sampled
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.platform import Platform
from fmops.store import utcnow
from fmops.store.models import Job, Score


@dataclass
class World:
    platform: Platform
    project: str
    other: str

    def rule(self, **fields: Any) -> None:
        service = EvaluatorService(self.platform.store, self.platform.catalog)
        service.create(self.project, RuleCreate.model_validate(fields), created_by_key_id=None)

    def runner(self, **options: Any) -> OnlineEvaluators:
        options.setdefault("queue_size", 1000)
        options.setdefault("judge_wait_seconds", 0)
        return OnlineEvaluators(self.platform.store, self.platform.jobs, self.platform.tracer, **options)

    def scores(self) -> set[tuple[str, str, float | None, str | None]]:
        with self.platform.store.session() as session:
            rows = session.scalars(select(Score)).all()
        assert all((s.source, s.author) == ("evaluator", s.name) for s in rows)
        return {(s.trace_id, s.name, s.value, s.label) for s in rows}


@pytest.fixture
def world(platform: Platform) -> World:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        project = auth.project_by_name(session, "default").id
    spec = ModelSpec(alias="grader", provider="openai", model="gpt-x", base_url="http://127.0.0.1:9/v1")
    platform.catalog.add(project, spec, trusted=True)
    return World(platform, project, auth.create_project("other").id)


def span(project: str, model: str = "small", content: Any = "hello", **extra: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "span_id": new_span_id(),
        "trace_id": new_trace_id(),
        "project_id": project,
        "name": f"chat {model}",
        "kind": "llm",
        "model": model,
        "start_time": now - timedelta(milliseconds=5),
        "end_time": now,
        "input": {"messages": [{"role": "user", "content": "hi"}], "params": {}},
        "output": None if content is None else {"role": "assistant", "content": content},
        "attributes": {},
        **extra,
    }


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_live_spans_are_scored_by_the_rules_that_want_them(world: World) -> None:
    p = world.project
    world.rule(name="is-json", scorer="json", model="small")
    world.rule(name="short", scorer="length", config={"max": 5}, sample_rate=0.5)
    world.rule(
        name="helpful", scorer="judge", model="small", config={"model": "grader", "rubric": "Helpful?"}
    )
    world.rule(name="off", scorer="json", enabled=False)
    json_span, text_span, other_model = (
        span(p, content='{"a": 1}'),
        span(p),
        span(p, model="big", content="hey"),
    )
    ignored = [
        span(p, parent_span_id=new_span_id()),  # a child span: the root carries the call's output
        span(p, attributes={EVALUATOR_ATTRIBUTE: "helpful"}),  # made by the judge itself
        span(p, content=None, status="error"),  # no output
        span(p, kind="embedding"),
        span(world.other),  # a project without rules
    ]
    # Sampling hashes the random trace ids, so how many "short" scores there are varies by run.
    expected = {
        (json_span["trace_id"], "is-json", 1.0, "pass"),
        (text_span["trace_id"], "is-json", 0.0, "fail"),
    }
    for row in (json_span, text_span, other_model):
        if sampled(row["trace_id"], 0.5):
            ok = len(row["output"]["content"]) <= 5
            expected.add((row["trace_id"], "short", 1.0 if ok else 0.0, "pass" if ok else "fail"))
    runner = world.runner()

    async def main() -> None:
        world.platform.tracer.start()
        await runner.start()
        for row in [json_span, text_span, other_model, *ignored]:
            world.platform.tracer.record(row)
        await world.platform.tracer.flush()
        await asyncio.to_thread(wait_until, lambda: runner.scored >= len(expected))
        world.platform.tracer.record(dict(json_span))  # a replay is stored once, and scored once
        await world.platform.tracer.flush()
        await runner.close()
        await world.platform.tracer.close()

    asyncio.run(main())
    assert world.scores() == expected
    assert runner.scored == len(expected)
    with world.platform.store.session() as session:
        jobs = session.scalars(select(Job).where(Job.kind == JUDGE_JOB)).all()
    assert [j.project_id for j in jobs] == [p] * len(jobs)
    judged = [span_id for job in jobs for span_id in job.params["span_ids"]]
    assert sorted(judged) == sorted([json_span["span_id"], text_span["span_id"]])
    assert runner.judge_jobs == len(jobs)


def test_a_full_queue_sheds_and_counts_instead_of_waiting(world: World) -> None:
    world.rule(name="is-json", scorer="json")
    runner = world.runner(queue_size=2)
    runner.refresh()
    started = time.perf_counter()
    runner.offer([span(world.project) for _ in range(5)])  # nothing takes from the queue yet
    assert time.perf_counter() - started < 0.5
    assert runner.shed == 3
    registry = CollectorRegistry()
    registry.register(runner.collector())
    exposition = generate_latest(registry).decode()
    assert "fmops_evaluator_shed_total 3.0" in exposition
    assert "fmops_evaluator_queue_depth 2.0" in exposition


def test_a_new_rule_applies_after_a_refresh(world: World) -> None:
    runner = world.runner()
    runner.refresh()
    runner.offer([span(world.project)])
    assert runner.shed == 0
    world.rule(name="is-json", scorer="json")
    runner.offer([span(world.project)])  # not seen yet: rules are read every few seconds...
    runner.refresh()  # ...or at once after a change through this process
    runner.offer([span(world.project)])

    async def main() -> None:
        await runner.start()
        await asyncio.to_thread(wait_until, lambda: runner.scored >= 1)
        await runner.close()

    asyncio.run(main())
    assert runner.scored == 1
