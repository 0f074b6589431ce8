"""Optimising a prompt against a suite through the gateway (a deterministic upstream, both backends)."""

from __future__ import annotations

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
