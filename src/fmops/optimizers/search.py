"""The search an optimizer drives: candidates scored through the gateway within a call budget, and
the optimizer model asked for rewritten instructions.

- Scoring reuses the eval runner (`fmops.evals.runner.Runner`): the same requests, retries on 429/5xx,
  concurrency, tracing (each call's span carries `fmops.eval.run_id` = the optimisation run) and
  response cache as an eval run; its rows are kept in memory here instead of `eval_results`.
  Candidates are scored one after another (a local engine then re-reads only each case's tokens).
- Budget: every answer a candidate needs counts as a call, whether the gateway made it or the eval
  cache had it (so a search does the same whatever is cached; `calls` and `cached` say which), and
  every request to the optimizer model counts, retries included. An answer this run already has for
  the same messages and case is reused and costs nothing. The held-out measurement at the end is
  reserved up front: the search can never spend it.
- Cancellation: the runner's progress callback raises `JobCancelled` when the job must stop.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fmops.auth import Principal
from fmops.errors import FmopsError
from fmops.evals.runner import CASE_ATTRIBUTE, RUN_ATTRIBUTE, EvalCase, Runner
from fmops.evals.suite import TargetSpec
from fmops.evals.targets import Target
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.service import Gateway
from fmops.gateway.spans import CallRecord
from fmops.jobs import JobCancelled
from fmops.optimizers.base import BudgetSpent, Candidate
from fmops.optimizers.candidates import answer_text, instructions, literal, rewrite_problem, variables
from fmops.scorers import Scorer
from fmops.scorers.base import text_of
from fmops.store import Store

JSON = dict[str, Any]
ATTEMPTS = 3  # an optimizer-model answer that is unusable is asked again twice, then dropped
MAX_FAILURES_SHOWN = 6
_TAGGED = re.compile(r"<instructions>(.*?)(?:</instructions>|$)", re.S | re.I)
_FENCED = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.S)


class _Collecting(Runner):
    """The eval runner, its result rows kept here (cache entries still written: a re-run is free)."""

    collected: list[JSON]

    def _write(self, rows: list[JSON], cache: list[JSON]) -> None:
        self.collected.extend(rows)
        if cache:
            with self.store.write() as session:
                session.connection().execute(self._insert_cache, cache)


def parse_instructions(text: str) -> str:
    """The instructions in an optimizer model's answer: between <instructions> tags, else in a
    fenced block, else the whole answer."""
    found = _TAGGED.search(text) or _FENCED.search(text)
    return (found.group(1) if found else text).strip()


def reflection_prompt(current: str, failures: list[JSON], scorer_names: list[str]) -> str:
    lines = [
        "You improve the instructions of a prompt for a language model.",
        "",
        "Current instructions:",
        "<instructions>",
        current,
        "</instructions>",
        "",
        f"Cases where the model scored below 1 (scorers: {', '.join(scorer_names)}; 0 is worst, 1 best):",
    ]
    for i, case in enumerate(failures, 1):
        lines += [
            "",
            f"Case {i}",
            f"Input: {case['input']}",
            f"Model's answer: {case['output']}",
            f"Expected answer: {case['expected']}",
            f"Score: {case['score']:.2f}",
        ]
    lines += [
        "",
        "Write improved instructions that make the model answer cases like these correctly, keeping what "
        "already works and any {{ variable }} placeholders. Reply with the new instructions only, between "
        "<instructions> and </instructions>.",
    ]
    return "\n".join(lines)


class Search:
    def __init__(
        self,
        *,
        store: Store,
        gateway: Gateway,
        principal: Principal,
        run_id: str,
        base: Target,
        scorers: list[tuple[Any, Scorer[Any]]],
        cases: dict[int, EvalCase],
        opt: list[int],
        heldout: list[int],
        budget: int,
        optimizer_model: str,
        seed: int,
        concurrency: int,
        record: Callable[[Candidate], None],
        report: Callable[[Search], None],
        log: Callable[[str], None],
    ) -> None:
        self.store, self.gateway, self.principal, self.run_id = store, gateway, principal, run_id
        self.base, self.scorers, self.cases = base, scorers, cases
        self.opt, self.heldout = opt, heldout
        self.budget, self.optimizer_model, self.seed = budget, optimizer_model, seed
        self.concurrency = concurrency
        self.rng = random.Random(seed)  # noqa: S311 (a seeded search, not a secret)
        self._record, self._report, self.log = record, report, log
        self.candidates: list[Candidate] = []
        self.cancelled = False  # seen by searches that run in a thread (the gepa library's loop)
        self.spent = self.calls = self.cached = self.dropped = self.proposals = 0
        self.reserve = 2 * len(heldout)  # the start and the winner on the held-out cases
        self._memo: dict[tuple[str, int], tuple[float, str]] = {}
        self.required = variables(base.view.messages) if base.view is not None else set()

    # --- budget ----------------------------------------------------------------------------------

    @property
    def left(self) -> int:
        """Calls the search may still spend (the held-out reserve excluded)."""
        return self.budget - self.reserve - self.spent

    @property
    def start(self) -> Candidate:
        return self.candidates[0]

    def best(self) -> Candidate:
        """The candidate with the highest mean on the optimisation cases (the earliest on a tie)."""
        return max(self.candidates, key=lambda c: (c.mean(self.opt) or 0.0, -c.seq))

    def new(self, messages: list[JSON], change: str, parent: Candidate | None) -> Candidate:
        return Candidate(len(self.candidates), messages, change, parent.seq if parent is not None else None)

    def add(self, candidate: Candidate) -> Candidate:
        """Keep a scored candidate (stored with its scores, shown in the console)."""
        candidate.seq = len(self.candidates)
        self.candidates.append(candidate)
        self._record(candidate)
        self.tick()
        return candidate

    def tick(self) -> None:
        """Report progress; raises JobCancelled (and remembers it) when the job must stop."""
        try:
            self._report(self)
        except JobCancelled:
            self.cancelled = True
            raise

    # --- scoring ---------------------------------------------------------------------------------

    def cost(self, candidates: list[Candidate], cases: list[int]) -> int:
        return sum(1 for c in candidates for i in cases if not self._known(c, i))

    def _known(self, candidate: Candidate, case: int) -> bool:
        """Nothing to call: answered already, or one of the candidate's own demonstrations."""
        return case in candidate.excluded or (candidate.key, case) in self._memo

    async def evaluate(
        self, candidates: list[Candidate], cases: list[int] | None = None, *, reserved: bool = False
    ) -> None:
        """Score each candidate on `cases` (default: the optimisation part); BudgetSpent, with
        nothing called, when the budget cannot pay for all of it."""
        cases = self.opt if cases is None else cases
        need = self.cost(candidates, cases)
        if need > (self.budget - self.spent if reserved else self.left):
            raise BudgetSpent(f"{need} more answers needed, {max(0, self.left)} calls left")
        self.spent += need
        # One candidate after another, each with the suite's concurrency over its cases: a local engine
        # keeps the prompt it last read (llama.cpp reuses the longest common prefix of the tokens), so
        # calls that share a candidate's instructions and demonstrations read only the case's tokens.
        # Candidates side by side in one runner alternate prefixes call by call, and every call read the
        # whole prompt again.
        for candidate in candidates:
            if self.cost([candidate], cases):
                await self._score(candidate, cases)
        for candidate in candidates:
            for i in cases:
                if i not in candidate.excluded:
                    candidate.scores[i], candidate.outputs[i] = self._memo[(candidate.key, i)]

    async def _score(self, candidate: Candidate, cases: list[int]) -> None:
        """Answer and score `candidate` on the cases it has no answer for (spent already counted)."""
        runner = _Collecting(
            store=self.store,
            gateway=self.gateway,
            principal=self.principal,
            run_id=self.run_id,
            cases=[self.cases[i] for i in cases],
            targets=[self._target(0, candidate)],
            scorers=self.scorers,
            done={(i, 0) for i in cases if self._known(candidate, i)},
            concurrency=self.concurrency,
            seed=self.seed,
            progress=lambda _done, _total: self.tick(),
        )
        runner.collected = []
        await runner.run()
        self.calls += runner.calls
        for row in runner.collected:
            score = float(row["score"]) if row["status"] == "ok" and row["score"] is not None else 0.0
            text = row["output"] if row["status"] == "ok" else f"(error: {row['error']})"
            self.cached += bool(row["cached"])
            self._memo[(candidate.key, int(row["case_index"]))] = (score, str(text or ""))

    def _target(self, index: int, candidate: Candidate) -> Target:
        assert self.base.view is not None
        view = replace(self.base.view, messages=candidate.messages, version=0)  # 0: not a stored version
        spec = TargetSpec(name=f"candidate-{candidate.seq}")
        # `appends` stays the start's: demonstrations add user turns, yet the case's messages still follow
        # a prompt of instructions only.
        return replace(self.base, index=index, spec=spec, view=view, prompt_version=None)

    def failures(self, candidate: Candidate, cases: list[int] | None = None) -> list[JSON]:
        """The cases it scored below 1 on (worst first, a few), as the reflection prompt shows them."""
        pool = [i for i in (cases or self.opt) if candidate.scores.get(i, 1.0) < 1.0]
        pool.sort(key=lambda i: candidate.scores[i])
        shown = []
        for i in pool[:MAX_FAILURES_SHOWN]:
            case = self.cases[i]
            text = case.input if isinstance(case.input, str) else text_of(case.input)
            shown.append(
                {
                    "input": text,
                    "output": candidate.outputs.get(i, ""),
                    "expected": answer_text(case.expected),
                    "score": candidate.scores[i],
                }
            )
        return shown

    # --- the optimizer model ---------------------------------------------------------------------

    async def rewrite(self, parent: Candidate, failures: list[JSON]) -> str | None:
        """New instructions for `parent` from the optimizer model, reflecting on `failures`; None (the
        proposal dropped and counted) when every attempt was unusable or the budget ran out."""
        current = instructions(parent.messages)
        prompt = reflection_prompt(current, failures, [spec.name for spec, _ in self.scorers])
        self.proposals += 1
        for attempt in range(ATTEMPTS):
            if self.left < 1:
                raise BudgetSpent("no calls left for the optimizer model")
            self.spent += 1
            answer = await self._ask(prompt, attempt)
            if answer is None:
                continue
            text = parse_instructions(answer)
            problem = rewrite_problem(current, text, self.required)
            if problem is None:
                # Instructions that fill no variable are kept as text: braces a model writes (JSON in its
                # examples, `{#` in Markdown) must not be read as a template.
                return text if self.required else literal(text)
            self.log(f"optimizer model's answer {attempt + 1}/{ATTEMPTS} unusable: {problem}")
        self.dropped += 1
        self.log(f"proposal dropped after {ATTEMPTS} unusable answers ({self.dropped} dropped so far)")
        return None

    async def _ask(self, prompt: str, attempt: int) -> str | None:
        def tag(record: CallRecord) -> None:
            record.attributes[RUN_ATTRIBUTE] = self.run_id
            record.attributes[CASE_ATTRIBUTE] = -1
            record.attributes["fmops.optimize.role"] = "optimizer"

        body = {
            "model": self.optimizer_model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.7 if attempt == 0 else 1.0,  # a retry asks for a different answer
            "max_tokens": 512,
            "seed": self.seed + 100 * self.proposals + attempt,  # each proposal, each retry: a new sample
        }
        try:
            self.calls += 1
            result = await self.gateway.chat(
                self.principal, ChatCompletionRequest.model_validate(body), annotate=tag
            )
        except FmopsError as exc:
            self.log(f"optimizer model call failed: {exc.message}")
            return None
        choices = result.body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else None

    async def pause(self) -> None:
        """Let the loop run (and a cancel be seen) between proposals."""
        self.tick()
        await asyncio.sleep(0)
