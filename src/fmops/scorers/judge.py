"""LLM-as-judge: a gateway model grades the output against a rubric on an integer scale.

The judge is asked for `{"score": int, "reason": str}` with `response_format: json_schema`, so even
a tiny local model (whose sampler is constrained by a grammar) answers something parseable. The
score is normalised to 0..1 (min of the scale -> 0, max -> 1); the reason becomes the comment, and
the label is "pass"/"fail" against the threshold, or the raw score ("4/5") when there is none.
The prompt is versioned (see `prompts`): the config's `prompt_version` picks it and every verdict
records it in `data.prompt`. An answer without a usable score is asked again (`retries`), then
left undecided ("unparseable"), never scored 0.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import orjson
from pydantic import Field, field_validator, model_validator

from fmops.scorers.base import FAIL, PASS, Case, ChatFn, Scorer, ScorerConfig, ScorerError, ScoreResult
from fmops.scorers.prompts import judge_prompt, versions

MAX_REASON_CHARS = 400
MAX_TOKENS = 160
# Long inputs and outputs are cut (keeping the end of the conversation, the start of the answer),
# so the judge's context window is not exceeded by one big trace.
DEFAULT_MAX_CHARS = 6000
_SCORE = re.compile(r'"score"\s*:\s*"?(-?\d+)')
_REASON = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)')


class JudgeConfig(ScorerConfig):
    model: str = Field(min_length=1, max_length=100, description="Gateway model alias that judges")
    rubric: str = Field(min_length=1, max_length=10_000, description="What a good answer is")
    min_score: int = Field(1, ge=0, le=100, description="Lowest score of the scale")
    max_score: int = Field(5, ge=1, le=100, description="Highest score of the scale")
    pass_threshold: int | None = Field(None, description="Scores at or above it pass")
    max_chars: int = Field(
        DEFAULT_MAX_CHARS, ge=200, le=200_000, description="Longest input and output shown to the judge"
    )
    temperature: float = Field(0.0, ge=0, le=2)
    prompt_version: int = Field(
        1, description=f"Version of the judge's prompt (see fmops.scorers.prompts): {versions('pointwise')}"
    )
    retries: int = Field(1, ge=0, le=3, description="Ask again this many times when the answer has no score")

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, value: int) -> int:
        judge_prompt("pointwise", value)
        return value

    @model_validator(mode="after")
    def _scale(self) -> JudgeConfig:
        if self.max_score <= self.min_score:
            raise ValueError(
                f"max_score ({self.max_score}) must be greater than min_score ({self.min_score})"
            )
        threshold = self.pass_threshold
        if threshold is not None and not self.min_score <= threshold <= self.max_score:
            raise ValueError(
                f"pass_threshold ({threshold}) must be within the scale {self.min_score}..{self.max_score}"
            )
        return self


def clip_tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def clip_head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class LLMJudge(Scorer[JudgeConfig]):
    """The rubric score normalised to 0..1, labelled "pass"/"fail" against `pass_threshold` (else
    "4/5"), the reason as the comment, `data` = {"score", "prompt"}; see the module docstring."""

    name: ClassVar[str] = "judge"
    description: ClassVar[str] = "A gateway model grades the output against a rubric (runs as a job)"
    config_model: ClassVar[type[ScorerConfig]] = JudgeConfig
    needs_model: ClassVar[bool] = True

    def models_used(self) -> list[str]:
        return [self.config.model]

    def response_format(self) -> dict[str, Any]:
        cfg = self.config
        schema = {
            "type": "object",
            "properties": {
                "score": {"type": "integer", "enum": list(range(cfg.min_score, cfg.max_score + 1))},
                # No maxLength: llama.cpp turns it into a grammar that samples ~10x slower;
                # max_tokens bounds the reason instead, and the parser copes with a cut-off one.
                "reason": {"type": "string"},
            },
            "required": ["score", "reason"],
            "additionalProperties": False,
        }
        return {"type": "json_schema", "json_schema": {"name": "judgement", "schema": schema}}

    def request(self, case: Case) -> dict[str, Any]:
        """The chat-completions body sent to the judge model."""
        cfg = self.config
        parts = [
            "CONVERSATION:\n" + clip_tail(case.input_text, cfg.max_chars),
            "ANSWER:\n" + clip_head(case.output_text, cfg.max_chars),
        ]
        if case.expected is not None:
            parts.append(
                "REFERENCE ANSWER:\n" + clip_head(Case.of(None, case.expected).output_text, cfg.max_chars)
            )
        prompt = judge_prompt("pointwise", cfg.prompt_version)
        system = prompt.system.format(rubric=cfg.rubric, low=cfg.min_score, high=cfg.max_score)
        return {
            "model": cfg.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "\n\n".join(parts)},
            ],
            "response_format": self.response_format(),
            "temperature": cfg.temperature,
            # Room for the score and a sentence or two of reason (kept to MAX_REASON_CHARS).
            "max_tokens": MAX_TOKENS,
        }

    def score(self, case: Case) -> ScoreResult:
        if self.chat is None:
            raise ScorerError("the judge needs a model to call; run it through the evaluator job")
        if not case.output_text.strip():
            return ScoreResult.undecided("empty", "the output is empty: nothing to judge")
        body = self.request(case)
        for _ in range(self.config.retries + 1):
            result = self.verdict(reply_text(self.chat, body))
            if result.label != "unparseable":
                break
        return result

    def verdict(self, content: str) -> ScoreResult:
        """The judge's answer as a result; lenient, since a small model may still wander."""
        cfg = self.config
        score, reason = _parse(content)
        if score is None:
            return ScoreResult.undecided("unparseable", f"the judge did not give a score: {content[:300]!r}")
        if not cfg.min_score <= score <= cfg.max_score:
            return ScoreResult.undecided(
                "out_of_range", f"the judge gave {score}, outside {cfg.min_score}..{cfg.max_score}: {reason}"
            )
        value = (score - cfg.min_score) / (cfg.max_score - cfg.min_score)
        if cfg.pass_threshold is not None:
            label = PASS if score >= cfg.pass_threshold else FAIL
        else:
            label = f"{score}/{cfg.max_score}"
        data = {"score": score, "prompt": judge_prompt("pointwise", cfg.prompt_version).ref}
        return ScoreResult(value, label, reason or None, data)


def reply_text(chat: ChatFn, body: dict[str, Any]) -> str:
    """The text of the first choice of a chat-completions response."""
    response = chat(body)
    choices = response.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")


def _parse(content: str) -> tuple[int | None, str]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        raw, reason = data.get("score"), data.get("reason")
        if isinstance(raw, int | float | str) and not isinstance(raw, bool):
            try:
                number = float(raw)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number), str(reason or "")[:MAX_REASON_CHARS]
    # Truncated or decorated JSON: pick the fields out of the text.
    found = _SCORE.search(content)
    if found is None:
        return None, ""
    why = _REASON.search(content)
    return int(found.group(1)), (why.group(1) if why else "")[:MAX_REASON_CHARS]
