"""`gepa`: GEPA (Agrawal et al., 2025) reflective prompt evolution, run by the `gepa` library.

Why the library: it is GEPA's authors' own implementation of the loop (Pareto-front candidate
selection per case, minibatch acceptance of a mutation, full scoring of accepted ones), pure Python
with no dependencies, and it runs offline: it only calls what it is given. fmops gives it an adapter
whose `evaluate` scores through the gateway with the suite's scorers (`Search.evaluate`: the budget,
the cache, the traces) and whose `propose_new_texts` asks the optimizer model through the same
reflection as the `instructions` optimizer (retries, dropped proposals counted). The library runs
in a worker thread; its calls come back to the job's event loop.

Both sets the library needs are the optimisation part (minibatches for reflection, the Pareto set
for selection); the held-out part stays out of the search. The library's merge step is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from fmops.errors import UserError
from fmops.optimizers.base import BudgetSpent, Candidate, Optimizer
from fmops.optimizers.candidates import instructions, with_instructions
from fmops.optimizers.search import ATTEMPTS, Search

COMPONENT = "instructions"
IDLE_ITERATIONS = 20  # iterations in a row that spent nothing: the search is stuck
T = TypeVar("T")


class Unusable(Exception):
    """The optimizer model gave no usable instructions (the library skips to its next iteration)."""


class _Adapter:
    """The `gepa.GEPAAdapter` protocol over a `Search`; called from the library's thread."""

    def __init__(self, search: Search, loop: asyncio.AbstractEventLoop) -> None:
        self.search, self.loop = search, loop
        start = search.start
        self.by_text: dict[str, Candidate] = {instructions(start.messages): start}
        self.parent_of: dict[str, str] = {}

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def _candidate(self, text: str) -> Candidate:
        found = self.by_text.get(text)
        if found is None:
            parent = self.by_text.get(self.parent_of.get(text, ""), self.search.start)
            found = self.search.new(
                with_instructions(self.search.start.messages, text),
                f"GEPA reflective mutation of candidate {parent.seq}'s instructions",
                parent,
            )
            self.by_text[text] = found
        return found

    def evaluate(self, batch: list[int], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa.core.adapter import EvaluationBatch

        chosen = self._candidate(candidate[COMPONENT])
        self._run(self.search.evaluate([chosen], list(batch)))
        full = set(batch) == set(self.search.opt)
        if full and chosen not in self.search.candidates:
            self._run(_add(self.search, chosen))
        scores = [chosen.scores[i] for i in batch]
        traces = [{"case": i} for i in batch] if capture_traces else None
        return EvaluationBatch(outputs=[chosen.outputs[i] for i in batch], scores=scores, trajectories=traces)

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        cases = [t["case"] for t in eval_batch.trajectories or []]
        return {name: [{"case": i} for i in cases] for name in components_to_update}

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: dict[str, Sequence[dict[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        parent = self._candidate(candidate[COMPONENT])
        cases = [r["case"] for r in reflective_dataset.get(COMPONENT, [])]
        failures = self.search.failures(parent, cases)
        if not failures:
            raise Unusable("no failed case in the minibatch to reflect on")
        text = self._run(self.search.rewrite(parent, failures))
        if text is None:
            raise Unusable("the optimizer model's answers were unusable")
        self.parent_of[text] = candidate[COMPONENT]
        return {COMPONENT: text}


async def _add(search: Search, candidate: Candidate) -> None:
    search.add(candidate)


class _Log:
    def __init__(self, search: Search) -> None:
        self.search = search

    def log(self, message: str) -> None:
        if "Traceback" not in message:
            self.search.log(f"gepa: {message.strip()[:500]}")


class Gepa(Optimizer):
    name = "gepa"
    description = "GEPA: reflective mutation with a Pareto set of candidates across cases (the gepa library)"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.minibatch = int(self.config.get("minibatch", 3))
        if not 1 <= self.minibatch <= 64:
            raise UserError("gepa minibatch: a whole number from 1 to 64", param="config")

    async def search(self, search: Search) -> None:
        try:
            from gepa import api as gepa
        except ImportError:
            raise UserError(
                "the gepa optimizer needs the gepa library: pip install 'fmops[optimize]'", param="optimizer"
            ) from None
        adapter = _Adapter(search, asyncio.get_running_loop())
        # The most one iteration can spend: the parent and the child on a minibatch, the reflection's
        # attempts, and the child on every optimisation case. The library stops before it would not fit.
        most = 2 * self.minibatch + ATTEMPTS + len(search.opt)

        idle = {"spent": -1, "iterations": 0}

        def stop(_state: Any) -> bool:
            # The library skips a minibatch its parent already aces, spending nothing: once every
            # iteration is such a skip (or the best is perfect), the search has nothing left to try.
            if search.spent == idle["spent"]:
                idle["iterations"] += 1
            else:
                idle["spent"], idle["iterations"] = search.spent, 0
            perfect = (search.best().mean(search.opt) or 0.0) >= 1.0
            return search.cancelled or search.left < most or perfect or idle["iterations"] >= IDLE_ITERATIONS

        try:
            run: Any = gepa.optimize  # the library's generic signature, called with our adapter
            await asyncio.to_thread(
                run,
                seed_candidate={COMPONENT: instructions(search.start.messages)},
                trainset=list(search.opt),
                valset=list(search.opt),
                adapter=adapter,
                reflection_minibatch_size=min(self.minibatch, len(search.opt)),
                candidate_selection_strategy="pareto",
                frontier_type="instance",
                stop_callbacks=[stop],
                logger=_Log(search),
                display_progress_bar=False,
                raise_on_exception=False,
                seed=search.seed,
            )
        except BudgetSpent:
            return
        search.tick()  # a cancel seen inside the library's thread ends the job here
