"""What an optimisation refuses before it records or calls anything, each with what to fix."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fmops.errors import UserError
from fmops.store.models import PromptOptimization
from optimizers.conftest import World, suite


def refusal(world: World, **options: object) -> str:
    with pytest.raises(UserError) as caught:
        world.start(**options)
    return caught.value.message


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_requests_are_refused_with_what_to_fix(world: World) -> None:
    few = refusal(world, suite=suite(5))
    assert "has 5 cases; optimising needs at least 8: 4 to optimise on and 4 held out" in few
    zero = refusal(world, budget=0, optimizer="fewshot")
    assert "budget 0: this suite needs at least 24 calls" in zero
    assert "held-out" in zero
    assert "at least 25 calls" in refusal(world, budget=10)  # the optimizer model's one call too
    assert "no optimizer 'gepe'; installed: fewshot, gepa, instructions" in refusal(world, optimizer="gepe")
    assert "did you mean 'reflector'" in refusal(world, optimizer_model="reflectr")
    assert "config of optimizer 'fewshot'" in refusal(
        world, optimizer="fewshot", config={"max_demos": "many"}
    )
    world.push("Say hello.", role="user")  # a user message that ignores the case's input
    fixed = refusal(world, prompt="echo@2")
    assert "add {{ input }}" in fixed
    assert "drop the user message" in fixed
    with world.platform.store.session() as session:  # nothing was recorded
        assert session.scalar(select(func.count()).select_from(PromptOptimization)) == 0
