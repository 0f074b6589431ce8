"""`instructions`: the optimizer model reflects on the cases the best prompt so far fails (input, its
answer, the expected answer, the score) and rewrites the instructions; a rewrite that scores higher
on the optimisation cases becomes the one reflected on next (hill climbing)."""

from __future__ import annotations

from fmops.optimizers.base import BudgetSpent, Optimizer
from fmops.optimizers.candidates import instructions, with_instructions
from fmops.optimizers.search import Search

GIVE_UP_AFTER = 3  # proposals dropped in a row: the optimizer model is not giving usable answers


class Instructions(Optimizer):
    name = "instructions"
    description = (
        "The optimizer model reflects on failed cases with their scores and rewrites the instructions"
    )

    async def search(self, search: Search) -> None:
        current = search.start
        dropped_in_a_row = 0
        try:
            while dropped_in_a_row < GIVE_UP_AFTER:
                await search.pause()
                failures = search.failures(current)
                if not failures:
                    return  # every optimisation case passes: nothing to reflect on
                text = await search.rewrite(current, failures)
                if text is None:
                    dropped_in_a_row += 1
                    continue
                dropped_in_a_row = 0
                old = instructions(current.messages)
                candidate = search.new(
                    with_instructions(current.messages, text),
                    f"instructions rewritten ({len(old)} -> {len(text)} characters) "
                    f"after {len(failures)} failed case{'s' if len(failures) > 1 else ''}",
                    current,
                )
                if search.cost([candidate], search.opt) > search.left:
                    return
                await search.evaluate([candidate])
                search.add(candidate)
                if (candidate.mean(search.opt) or 0.0) > (current.mean(search.opt) or 0.0):
                    current = candidate
            search.log(f"stopped: {GIVE_UP_AFTER} proposals in a row were unusable")
        except BudgetSpent:
            return
