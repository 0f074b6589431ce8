"""The new per-case scorers that judge a call alone serve online evaluators: latency and cost bounds
score live spans from what the gateway recorded, through the real trace writer and online runner."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from fmops.evaluators import EvaluatorService, OnlineEvaluators, RuleCreate
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.platform import Platform
from fmops.store import utcnow
from fmops.store.models import Score


def span(project: str, latency_ms: float | None, cost: float | None) -> dict[str, Any]:
    now = utcnow()
    return {
        "span_id": new_span_id(),
        "trace_id": new_trace_id(),
        "project_id": project,
        "name": "chat small",
        "kind": "llm",
        "model": "small",
        "start_time": now - timedelta(milliseconds=5),
        "end_time": now,
        "input": {"messages": [{"role": "user", "content": "hi"}], "params": {}},
        "output": {"role": "assistant", "content": "Bonjour, ça va ?"},
        "attributes": {},
        "latency_ms": latency_ms,
        "cost": cost,
    }


def test_latency_and_cost_rules_score_live_spans(platform: Platform) -> None:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        project = auth.project_by_name(session, "default").id
    service = EvaluatorService(platform.store, platform.catalog)
    for body in (
        {"name": "fast", "scorer": "latency", "config": {"max_ms": 100}},
        {"name": "cheap", "scorer": "cost", "config": {"max_usd": 0.001}},
        {"name": "polite", "scorer": "any_of", "config": {"strings": ["bonjour", "merci"]}},
    ):
        service.create(project, RuleCreate.model_validate(body), created_by_key_id=None)
    quick, slow, unpriced = span(project, 40.0, 0.0002), span(project, 900.0, 0.01), span(project, 50.0, None)
    runner = OnlineEvaluators(
        platform.store, platform.jobs, platform.tracer, queue_size=100, judge_wait_seconds=0
    )

    async def main() -> None:
        platform.tracer.start()
        await runner.start()
        for row in (quick, slow, unpriced):
            platform.tracer.record(row)
        await platform.tracer.flush()
        deadline = time.monotonic() + 10
        while runner.scored < 9:
            assert time.monotonic() < deadline, "the spans were not scored in time"
            await asyncio.sleep(0.05)
        await runner.close()
        await platform.tracer.close()

    asyncio.run(main())
    with platform.store.session() as session:
        scores = {(s.trace_id, s.name): (s.value, s.label) for s in session.scalars(select(Score))}
    assert scores == {
        (quick["trace_id"], "fast"): (1.0, "pass"),
        (quick["trace_id"], "cheap"): (1.0, "pass"),
        (quick["trace_id"], "polite"): (1.0, "pass"),
        (slow["trace_id"], "fast"): (0.0, "fail"),
        (slow["trace_id"], "cheap"): (0.0, "fail"),
        (slow["trace_id"], "polite"): (1.0, "pass"),
        (unpriced["trace_id"], "fast"): (1.0, "pass"),
        (unpriced["trace_id"], "cheap"): (None, "no_cost"),  # undecided, not a fail
        (unpriced["trace_id"], "polite"): (1.0, "pass"),
    }
