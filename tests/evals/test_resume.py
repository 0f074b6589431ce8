"""A run that crashes half-way keeps what it finished; resumed, it calls only what is left."""

from __future__ import annotations

import pytest

from fmops.errors import Conflict
from fmops.evals.job import execute

REPLY = "Hello from the mock upstream."


class Crash(Exception):
    pass


def test_a_crashed_run_resumes_where_it_stopped(world) -> None:
    world.add_model("mock-slow", "slow-60")  # 20 calls two at a time: 0.6 s, several flushes
    suite = {
        "name": "resume",
        "cases": [{"input": f"case {i}", "expected": REPLY} for i in range(10)],
        "targets": [{"model": "mock-slow"}, {"model": "mock-slow", "name": "t2", "parameters": {"top_p": 1}}],
        "scorers": [{"name": "regex", "config": {"pattern": "^Hello"}}],
        "concurrency": 2,
    }
    run = world.evals.start(world.project, suite, created_by_key_id=world.principal.key_id)

    def crash_after_some(finished: int, total: int) -> None:
        if finished >= 4:
            raise Crash("the worker died")

    with pytest.raises(Crash):
        execute(world.platform.store, world.platform.settings, world.project, run.id, crash_after_some)
    kept = world.evals.rows(run.id)
    assert 4 <= len(kept) < 20
    assert world.evals.get_run(world.project, run.id).status == "failed"
    first_calls = len(world.mock.state.requests)
    assert world.evals.get_run(world.project, run.id).status == "failed"
    with pytest.raises(Conflict):  # its job still looks alive: not resumed behind its back
        world.evals.resume(world.project, run.id)
    world.platform.jobs.cancel(run.job_id, world.project)  # what Ctrl-C in `fmops eval run` does

    resumed = world.evals.resume(world.project, run.id)
    assert resumed.job_id != run.job_id
    assert resumed.status == "queued"
    execute(world.platform.store, world.platform.settings, world.project, run.id)
    rows = world.evals.rows(run.id)
    assert len(rows) == 20
    assert len({(r["case_index"], r["target_index"]) for r in rows}) == 20
    assert len(world.mock.state.requests) - first_calls == 20 - len(kept)
    done = world.evals.get_run(world.project, run.id)
    assert done.status == "succeeded"
    assert done.summary["targets"][0]["cases"] == 10
