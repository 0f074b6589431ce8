"""`system_prompt_leak`: the answer must not repeat a long span of the endpoint's system prompt
(`context.system_prompt`): at least `min_chars` characters in a row, compared with case and runs of
whitespace folded, so re-wrapping or upper-casing the prompt does not hide a leak.

Every common run of `min_chars` characters contains a whole window of `min_chars // 2` characters that
starts at a multiple of that half in the answer; so the answer is probed only there (a set lookup per
half-window), and each probe that hits the prompt's index is extended both ways to its full length."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import ClassVar

from pydantic import Field

from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, Stage, TextSpan

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> tuple[str, list[int]]:
    """Lower case with each run of whitespace one space; and, for each character kept, where it was."""
    out: list[str] = []
    where: list[int] = []
    pos = 0
    for m in _SPACE.finditer(text):
        chunk = text[pos : m.start()].lower()
        out.append(chunk)
        where.extend(range(pos, pos + len(chunk)) if len(chunk) == m.start() - pos else _spread(pos, chunk))
        out.append(" ")
        where.append(m.start())
        pos = m.end()
    chunk = text[pos:].lower()
    out.append(chunk)
    where.extend(range(pos, pos + len(chunk)) if len(chunk) == len(text) - pos else _spread(pos, chunk))
    return "".join(out), where


def _spread(pos: int, chunk: str) -> list[int]:
    # lower() changed the length (e.g. "İ" becomes two characters): map each to where its source was.
    return [pos + min(i, len(chunk) - 1) for i in range(len(chunk))]


@lru_cache(maxsize=64)
def _index(prompt: str, half: int) -> tuple[str, dict[str, list[int]]]:
    """The normalised prompt and where each of its windows of `half` characters starts."""
    norm, _ = normalise(prompt)
    windows: dict[str, list[int]] = {}
    for i in range(len(norm) - half + 1):
        windows.setdefault(norm[i : i + half], []).append(i)
    return norm, windows


def leaked_runs(answer: str, prompt: str, min_chars: int) -> list[tuple[int, int]]:
    """Spans of `answer` (original offsets, end exclusive) that repeat ≥ min_chars of `prompt`."""
    half = max(1, min_chars // 2)
    norm_prompt, windows = _index(prompt, half)
    if len(norm_prompt) < min_chars:
        return []
    norm, where = normalise(answer)
    runs: list[tuple[int, int]] = []
    covered = 0
    for a in range(0, len(norm) - half + 1, half):
        if a + half <= covered:
            continue
        starts = windows.get(norm[a : a + half])
        if not starts:
            continue
        best = (0, 0)
        for p in starts[:50]:  # a prompt of one repeated phrase: a few candidates are enough
            lo_a, lo_p = a, p
            while lo_a > 0 and lo_p > 0 and norm[lo_a - 1] == norm_prompt[lo_p - 1]:
                lo_a, lo_p = lo_a - 1, lo_p - 1
            hi_a, hi_p = a + half, p + half
            while hi_a < len(norm) and hi_p < len(norm_prompt) and norm[hi_a] == norm_prompt[hi_p]:
                hi_a, hi_p = hi_a + 1, hi_p + 1
            if hi_a - lo_a > best[1] - best[0]:
                best = (lo_a, hi_a)
        lo, hi = best
        if hi - lo >= min_chars and hi > covered:
            lo, covered = max(lo, covered), hi
            while lo < hi and norm[lo] == " ":  # a run that starts or ends between words
                lo += 1
            while hi > lo and norm[hi - 1] == " ":
                hi -= 1
            runs.append((where[lo], where[hi - 1] + 1))
    return runs


class LeakConfig(GuardrailConfig):
    min_chars: int = Field(
        40, ge=8, le=10_000, description="A repeated run this long (case and whitespace folded) is a leak"
    )


class SystemPromptLeak(Guardrail[LeakConfig]):
    name: ClassVar[str] = "system_prompt_leak"
    description: ClassVar[str] = (
        "The answer must not repeat a long span (default 40 characters) of the endpoint's system prompt"
    )
    Config = LeakConfig
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.output})
    spans: ClassVar[bool] = True

    def check(self, text: str, context: Context) -> Decision:
        if not context.system_prompt:
            return Decision.allow()
        runs = leaked_runs(text, context.system_prompt, self.config.min_chars)
        if not runs:
            return Decision.allow()
        longest = max(end - start for start, end in runs)
        return Decision.block(
            f"the answer repeats the system prompt ({len(runs)} passage(s), the longest"
            f" {longest} characters)",
            spans=tuple(TextSpan(start, end, "system_prompt") for start, end in runs),
            data={"passages": len(runs), "longest": longest},
        )
