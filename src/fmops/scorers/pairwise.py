"""Pairwise LLM-as-judge: which of two answers to the same conversation is better, with position-bias
control.

Judges prefer whichever answer they read first (or second) more often than quality explains. So the
pair is judged twice, once in each order, and a side wins only when both orders agree; any
disagreement is a tie. `compare(case, other)` judges the case's output (A) against another output
(B): a runner comparing two targets calls it per case. `score(case)` compares the output with the
case's expected output (a baseline answer), so the scorer also fits a suite's `scorers:` list.

Result: value 1.0 when A wins, 0.0 when B wins, 0.5 for a tie; label "win", "loss" or "tie";
`data` = {"verdicts": [first order's winner, second order's winner] (as "A", "B" or "tie", A
being the case's output), "reasons": [...], "prompt": "pairwise@1"}. A judge answer without a
verdict is asked again (`retries`), then the case is undecided ("unparseable"), never a loss.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, field_validator

from fmops.scorers.base import Case, Scorer, ScorerConfig, ScorerError, ScoreResult, text_of
from fmops.scorers.judge import (
    DEFAULT_MAX_CHARS,
    MAX_REASON_CHARS,
    MAX_TOKENS,
    clip_head,
    clip_tail,
    reply_text,
)
from fmops.scorers.prompts import judge_prompt, versions
from fmops.scorers.text import missing_expected

DEFAULT_RUBRIC = "The better response answers the conversation more correctly, helpfully and relevantly."
Winner = Literal["A", "B", "tie"]
_WINNER = re.compile(r'"winner"\s*:\s*"(A|B|tie)"', re.IGNORECASE)
_REASON = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)')
VALUE = {"A": 1.0, "B": 0.0, "tie": 0.5}
LABEL = {"A": "win", "B": "loss", "tie": "tie"}


class PairwiseConfig(ScorerConfig):
    model: str = Field(min_length=1, max_length=100, description="Gateway model alias that judges")
    rubric: str = Field(DEFAULT_RUBRIC, min_length=1, max_length=10_000, description="What makes one better")
    swap: bool = Field(
        True, description="Judge both orders and count a win only when they agree (position-bias control)"
    )
    prompt_version: int = Field(
        1, description=f"Version of the judge's prompt (see fmops.scorers.prompts): {versions('pairwise')}"
    )
    retries: int = Field(
        1, ge=0, le=3, description="Ask again this many times when the answer has no verdict"
    )
    max_chars: int = Field(
        DEFAULT_MAX_CHARS, ge=200, le=200_000, description="Longest input and answers shown to the judge"
    )
    temperature: float = Field(0.0, ge=0, le=2)

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, value: int) -> int:
        judge_prompt("pairwise", value)
        return value


def parse_winner(content: str) -> tuple[Winner | None, str]:
    """("A" | "B" | "tie", reason) from a judge's answer, or (None, "") when it gives no verdict."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    raw: str | None = None
    reason = ""
    if isinstance(data, dict) and isinstance(data.get("winner"), str):
        raw, reason = data["winner"].strip(), str(data.get("reason") or "")
    else:  # truncated or decorated JSON: pick the fields out of the text
        found = _WINNER.search(content)
        if found is not None:
            why = _REASON.search(content)
            raw, reason = found.group(1), why.group(1) if why else ""
    if raw is None:
        return None, ""
    if raw.lower() == "tie":
        return "tie", reason[:MAX_REASON_CHARS]
    if raw.upper() in ("A", "B"):
        return ("A" if raw.upper() == "A" else "B"), reason[:MAX_REASON_CHARS]
    return None, ""


_SWAPPED: dict[Winner, Winner] = {"A": "B", "B": "A", "tie": "tie"}


class PairwiseJudge(Scorer[PairwiseConfig]):
    """A gateway model picks the better of two answers; see the module docstring for the result."""

    name: ClassVar[str] = "judge_pairwise"
    description: ClassVar[str] = (
        "A gateway model compares the output with a baseline answer, in both orders (runs as a job)"
    )
    config_model: ClassVar[type[ScorerConfig]] = PairwiseConfig
    needs_model: ClassVar[bool] = True
    needs_expected: ClassVar[bool] = True

    def models_used(self) -> list[str]:
        return [self.config.model]

    def response_format(self) -> dict[str, Any]:
        schema = {
            "type": "object",
            "properties": {
                "winner": {"type": "string", "enum": ["A", "B", "tie"]},
                "reason": {"type": "string"},
            },
            "required": ["winner", "reason"],
            "additionalProperties": False,
        }
        return {"type": "json_schema", "json_schema": {"name": "preference", "schema": schema}}

    def request(self, case: Case, first: str, second: str) -> dict[str, Any]:
        """The chat-completions body asking which of `first` (shown as A) and `second` (B) is better."""
        cfg = self.config
        user = "\n\n".join(
            [
                "CONVERSATION:\n" + clip_tail(case.input_text, cfg.max_chars),
                "RESPONSE A:\n" + clip_head(first, cfg.max_chars),
                "RESPONSE B:\n" + clip_head(second, cfg.max_chars),
            ]
        )
        system = judge_prompt("pairwise", cfg.prompt_version).system.format(rubric=cfg.rubric)
        return {
            "model": cfg.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": self.response_format(),
            "temperature": cfg.temperature,
            "max_tokens": MAX_TOKENS,
        }

    def _ask(self, case: Case, first: str, second: str) -> tuple[Winner | None, str, str]:
        """(winner as shown, reason, last raw answer), asking again while the answer has no verdict."""
        if self.chat is None:
            raise ScorerError(
                "the pairwise judge needs a model to call; run it through an eval or evaluator job"
            )
        body = self.request(case, first, second)
        content = ""
        for _ in range(self.config.retries + 1):
            content = reply_text(self.chat, body)
            winner, reason = parse_winner(content)
            if winner is not None:
                return winner, reason, content
        return None, "", content

    def compare(self, case: Case, other: Any) -> ScoreResult:
        """Judge the case's output (A) against `other` (B, any output: a message, text...)."""
        a, b = case.output_text, text_of(other)
        if not a.strip() and not b.strip():
            return ScoreResult.undecided("empty", "both answers are empty: nothing to compare")
        first, reason1, raw = self._ask(case, a, b)
        if first is None:
            return ScoreResult.undecided("unparseable", f"the judge gave no verdict: {raw[:300]!r}")
        verdicts: list[Winner] = [first]
        reasons = [reason1]
        if self.config.swap:
            shown, reason2, raw = self._ask(case, b, a)
            if shown is None:
                return ScoreResult.undecided("unparseable", f"the judge gave no verdict: {raw[:300]!r}")
            # Shown swapped: the judge's "A" is our B.
            verdicts.append(_SWAPPED[shown])
            reasons.append(reason2)
        outcome: Winner = verdicts[0] if len(set(verdicts)) == 1 else "tie"
        comment = reasons[0] or None
        if len(set(verdicts)) > 1:
            comment = f"the two orders disagree ({verdicts[0]} first, {verdicts[1]} swapped): a tie"
        data = {
            "verdicts": verdicts,
            "reasons": reasons,
            "prompt": judge_prompt("pairwise", self.config.prompt_version).ref,
        }
        return ScoreResult(VALUE[outcome], LABEL[outcome], comment, data)

    def score(self, case: Case) -> ScoreResult:
        """The output against the case's expected (baseline) answer."""
        if (missing := missing_expected(case)) is not None:
            return missing
        return self.compare(case, case.expected)
