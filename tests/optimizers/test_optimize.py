"""Optimising a prompt against a suite through the gateway (a deterministic upstream, both backends)."""

from __future__ import annotations

import pytest

from fmops.jobs import JobCancelled, JobContext
from optimizers.conftest import World


def test_instructions_push_a_proven_version_and_move_no_label(world: World) -> None:
    run = world.execute(world.start(optimizer="instructions", optimizer_model="reflector", budget=60))
    assert run.status == "succeeded", run.error
    assert run.pushed_version == 2
    result = run.result or {}
    assert result["heldout"]["mean_b"] > result["heldout"]["mean_a"]
    pushed = world.service.prompts.get(world.project, "echo", version=2)
    assert "UPPERCASE" in pushed.messages[0]["content"]
    assert pushed.message is not None
    assert "95% CI" in pushed.message
    assert "p = " in pushed.message
    assert world.service.prompts.get(world.project, "echo", label="production").version == 1
    candidates = world.service.candidates(world.project, run.id)
    assert [c.seq for c in candidates][:2] == [0, 1]
    assert candidates[1].heldout_score == 1.0
    assert run.calls <= 60


def test_fewshot_and_gepa_find_better_versions(world: World) -> None:
    fewshot = world.execute(world.start(optimizer="fewshot", budget=60))
    assert fewshot.status == "succeeded", fewshot.error
    assert fewshot.pushed_version == 2
    shots = world.service.prompts.get(world.project, "echo", version=2).messages
    assert [m["role"] for m in shots[:3]] == ["system", "user", "assistant"]
    assert fewshot.calls <= 60
    gepa = world.execute(world.start(optimizer="gepa", optimizer_model="reflector", budget=60))
    assert gepa.status == "succeeded", gepa.error
    assert (gepa.result or {})["winner_opt"] == 1.0
    assert gepa.pushed_version == 3
    assert "GEPA" in (world.service.prompts.get(world.project, "echo", version=3).message or "")
    assert world.service.prompts.get(world.project, "echo", label="production").version == 1


SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # logic, not storage: one backend


@SQLITE
def test_candidates_are_answered_one_after_another(world: World) -> None:
    # A local engine reuses the prompt it last read: calls of one candidate must not alternate with
    # another's (fewshot scores 4 candidates per batch; the held-out test scores the start and the best).
    first = len(world.upstream.prefixes)
    run = world.execute(world.start(optimizer="fewshot", budget=60))
    assert run.status == "succeeded", run.error
    calls = world.upstream.prefixes[first:]
    runs = [p for i, p in enumerate(calls) if i == 0 or calls[i - 1] != p]  # contiguous stretches
    assert len(set(calls)) >= 3
    # Each candidate in one stretch, and a second one for those measured on the held-out cases later.
    again = sum(c.heldout_score is not None for c in world.service.candidates(world.project, run.id))
    assert again >= 2
    assert len(runs) == len(set(calls)) + again


@SQLITE
def test_unusable_optimizer_output_is_retried_then_dropped_and_counted(world: World) -> None:
    before = world.upstream.calls["mute"]
    run = world.execute(world.start(optimizer="instructions", optimizer_model="mute", budget=60))
    assert run.status == "succeeded", run.error
    assert run.dropped == 3  # three proposals in a row unusable: the search gives up
    assert world.upstream.calls["mute"] - before == 9  # each asked three times
    assert run.pushed_version is None
    assert "nothing pushed" in (run.result or {})["reason"]
    assert (run.result or {})["heldout_start"] == 0.2  # the start is measured on the held-out cases anyway
    assert [c.seq for c in world.service.candidates(world.project, run.id)] == [0]


class _CancelledAfterTheStart(JobContext):
    """Cancelled (as the worker's heartbeat would) once the start has been scored."""

    def progress(self, fraction: float, message: str | None = None) -> None:
        if message is not None and "1 candidates" in message:
            self.stop("cancelled")
        super().progress(fraction, message)


@SQLITE
def test_a_cancelled_run_pushes_nothing(world: World) -> None:
    run = world.start(optimizer="instructions", optimizer_model="reflector", budget=60)
    assert run.job_id is not None
    ctx = _CancelledAfterTheStart(
        world.platform.jobs, run.job_id, world.project, None, world.platform.settings
    )
    with pytest.raises(JobCancelled):
        world.execute(run, ctx)
    stopped = world.service.get(world.project, run.id)
    assert stopped.status == "cancelled"
    assert stopped.pushed_version is None
    assert [v.version for v in world.service.prompts.versions(world.project, "echo")] == [1]
