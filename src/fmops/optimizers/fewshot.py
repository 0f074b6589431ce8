"""`fewshot`: a fixed set of demonstrations from the optimisation cases, found by seeded random search.

Each candidate is the start prompt with k worked examples (a case's input as the user's turn, its
expected answer as the assistant's) inserted after the instructions, k from 1 to `max_demos`. A
candidate is judged on the optimisation cases other than its own demonstrations (a demonstration
would answer its own case). Candidates are scored a few at a time, in parallel, until the budget
is spent or `rounds` sets were tried.

Choosing demonstrations per input at request time (dynamic few-shot) is an endpoint option at
serving time, not a prompt version: see the README's prompt optimisation section.
"""

from __future__ import annotations

from typing import Any

from fmops.errors import UserError
from fmops.optimizers.base import BudgetSpent, Candidate, Optimizer
from fmops.optimizers.candidates import answer_text, with_demos
from fmops.optimizers.search import Search
from fmops.scorers.base import text_of

BATCH = 4  # candidates drawn and budgeted together (scored one after another: `Search.evaluate`)


class FewShot(Optimizer):
    name = "fewshot"
    description = "A fixed best set of demonstrations from the optimisation cases (seeded random search)"
    uses_optimizer_model = False

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.max_demos = int(self.config.get("max_demos", 4))
        self.rounds = int(self.config.get("rounds", 64))
        if not 1 <= self.max_demos <= 16:
            raise UserError("fewshot max_demos: a whole number from 1 to 16", param="config")

    def _demo(self, search: Search, index: int) -> tuple[str, str]:
        case = search.cases[index]
        body = search.base.request(case.input, search.seed, case.metadata)
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = text_of(users[-1]) if users else text_of(case.input)
        return text, answer_text(case.expected)

    async def search(self, search: Search) -> None:
        pool = list(search.opt)
        most = min(self.max_demos, len(pool) - 1)
        tried: set[tuple[int, ...]] = set()
        for _ in range(self.rounds // BATCH + 1):
            batch: list[tuple[Candidate, tuple[int, ...]]] = []
            for _ in range(BATCH * 4):  # draws that repeat a set already tried are skipped
                if len(batch) == BATCH:
                    break
                k = search.rng.randint(1, most)
                chosen = tuple(sorted(search.rng.sample(pool, k)))
                if chosen in tried:
                    continue
                tried.add(chosen)
                demos = [self._demo(search, i) for i in chosen]
                candidate = search.new(
                    with_demos(search.start.messages, demos),
                    f"{k} demonstration{'s' if k > 1 else ''} added (cases {', '.join(map(str, chosen))})",
                    search.start,
                )
                candidate.excluded = frozenset(chosen)
                batch.append((candidate, chosen))
            while batch and search.cost([c for c, _ in batch], pool) > search.left:
                batch.pop()
            if not batch:
                return
            candidates = [c for c, _ in batch]
            try:
                # Scored side by side in one runner; each skips its own demonstrations (`excluded`).
                await search.evaluate(candidates, pool)
            except BudgetSpent:
                return
            for candidate in candidates:
                search.add(candidate)
            if len(tried) >= self.rounds:
                return
