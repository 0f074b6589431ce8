"""The judges' prompts, versioned: a published version is never edited, a change is a new version.

A judge's config names the version it uses (`prompt_version`, default the first), and every verdict
records `data.prompt` ("pairwise@1"), so an eval run says exactly which prompt judged it and an old
run stays comparable after a better prompt ships.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    kind: str  # "pointwise" or "pairwise"
    version: int
    system: str  # a str.format template; its fields are documented per kind below

    @property
    def ref(self) -> str:
        return f"{self.kind}@{self.version}"


# pointwise: {rubric}, {low}, {high}
POINTWISE_V1 = JudgePrompt(
    "pointwise",
    1,
    "You are a strict, impartial evaluator. Grade the ANSWER to the CONVERSATION using this rubric:\n"
    "{rubric}\n\n"
    "Give an integer score from {low} (worst) to {high} (best) and a one-sentence reason. "
    'Reply with JSON only: {{"score": <integer>, "reason": "<one sentence>"}}',
)

# pairwise: {rubric}
PAIRWISE_V1 = JudgePrompt(
    "pairwise",
    1,
    "You are a strict, impartial evaluator. Compare two responses, A and B, to the same CONVERSATION "
    "using this rubric:\n{rubric}\n\n"
    "Judge only quality against the rubric: ignore the order in which the responses appear and their "
    "length unless the rubric asks for it. Pick the better response, or tie when neither is better. "
    'Reply with JSON only: {{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}}',
)

PROMPTS: dict[tuple[str, int], JudgePrompt] = {(p.kind, p.version): p for p in (POINTWISE_V1, PAIRWISE_V1)}


def versions(kind: str) -> list[int]:
    return sorted(v for k, v in PROMPTS if k == kind)


def judge_prompt(kind: str, version: int) -> JudgePrompt:
    """The prompt; a ValueError naming the versions there are (for config validators)."""
    try:
        return PROMPTS[(kind, version)]
    except KeyError:
        known = ", ".join(str(v) for v in versions(kind))
        raise ValueError(f"there is no {kind} judge prompt version {version}; versions: {known}") from None
