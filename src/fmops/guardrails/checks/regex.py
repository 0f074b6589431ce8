"""`regex`: a deny list of regular expressions. A match recommends `block`, with its span (so a policy
may redact or mask instead). Users' patterns run under a time limit (the `regex` package, see
fmops.scorers.safe_regex), and a pattern that backtracks catastrophically on simple probe strings is
refused when the policy is made; one that still runs out of time on a real text raises
GuardrailError, and the policy's `on_error` decides."""

from __future__ import annotations

import re
import re._parser as re_parser  # type: ignore[import-not-found]  # the stdlib parser, unstubbed
import time
import warnings
from typing import Annotated, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from fmops.guardrails.base import (
    INLINE_CHARS,
    Context,
    Decision,
    Guardrail,
    GuardrailConfig,
    GuardrailError,
    TextSpan,
)
from fmops.scorers.safe_regex import MATCH_TIMEOUT_S, check_pattern, compile_pattern

# The whole scan of one text, every pattern together: a sane deny list over 1 MB takes milliseconds.
SCAN_BUDGET_S = 1.0
MAX_SPANS = 10_000
# Strings on which nested repeats like (a+)+$ or (\w+\s?)*$ take exponential time: a pattern that
# runs out of time on one of them would on users' text too.
_PROBES = tuple(unit * (2000 // len(unit)) + "!" for unit in ("a", "0", " ", "a ", "ab", "a-", "a.", "\t"))

Pattern = Annotated[str, Field(min_length=1, max_length=2000)]


def _probe(pattern: str, flags: int) -> None:
    compiled = compile_pattern(pattern, flags)
    for probe in _PROBES:
        try:
            compiled.search(probe, timeout=MATCH_TIMEOUT_S * 3, concurrent=True)
        except TimeoutError:
            raise ValueError(
                f"pattern {pattern!r} backtracks catastrophically (it ran out of time on a"
                f" {len(probe)}-character probe); avoid nested repeats like (a+)+"
            ) from None


def required_literals(pattern: str, flags: int) -> tuple[tuple[str, ...], bool]:
    """The runs of literal characters at the top level of `pattern` (every match holds each), and
    whether they match regardless of case; none where `re`'s parser cannot read the pattern, or warns
    (syntax that the `regex` package reads otherwise: a POSIX class "[[:alpha:]]" is a nested set to
    `re`, then a literal "]"). Case-insensitive runs are kept only where ASCII: on an ASCII text they
    are then found in its lower-case form exactly as the pattern would match them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parsed = re_parser.parse(pattern, flags)
    except (re.error, Warning, RecursionError, OverflowError):
        return (), False
    if any(op is re_parser.LITERAL and arg in (ord("{"), ord("}")) for op, arg in parsed.data):
        return (), False  # to `regex` a brace may be a fuzzy-match constraint ("(?:foo){e<=1}")
    if parsed.state.flags & re.VERBOSE and not pattern.isascii():
        return (), False  # which non-ASCII white space a verbose pattern skips: not worth a doubt
    folded = bool(parsed.state.flags & re.IGNORECASE)
    runs: list[str] = []
    run: list[str] = []
    for op, arg in [*parsed.data, (None, None)]:
        if op is re_parser.LITERAL:
            run.append(chr(arg))
            continue
        literal = "".join(run)
        run = []
        if literal and not (folded and not literal.isascii()):
            runs.append(literal.lower() if folded else literal)
    return tuple(runs), folded


class RegexConfig(GuardrailConfig):
    ignore_case: bool = True  # before `patterns`: their check reads it
    patterns: list[Pattern] = Field(
        min_length=1, max_length=100, description="Python regular expressions; any match is a hit"
    )

    @field_validator("patterns")
    @classmethod
    def _safe(cls, value: list[str], info: ValidationInfo) -> list[str]:
        flags = re.IGNORECASE if info.data.get("ignore_case", True) else 0
        for pattern in value:
            check_pattern(pattern, flags)
            _probe(pattern, flags)
        return value


class Regex(Guardrail[RegexConfig]):
    name: ClassVar[str] = "regex"
    description: ClassVar[str] = (
        "A deny list of regular expressions (run under a time limit); any match is a hit, with its span"
    )
    Config = RegexConfig
    spans: ClassVar[bool] = True

    def __init__(self, config: RegexConfig) -> None:
        super().__init__(config)
        flags = re.IGNORECASE if config.ignore_case else 0
        self._compiled = [compile_pattern(p, flags) for p in config.patterns]
        # A pattern whose literal runs are not all in the text cannot match it: its search (a
        # microsecond or more each, with the time limit) is skipped.
        self._literals = [required_literals(p, flags) for p in config.patterns]

    def check(self, text: str, context: Context) -> Decision:
        deadline = time.monotonic() + SCAN_BUDGET_S
        # A text the engine checks inline is matched holding the GIL: the event loop waits for this
        # check either way, and letting go of the GIL at each search only handed it to another thread
        # (the trace writer) for up to the switch interval (5 ms) before the loop got it back
        # (benchmarks/guardrails_overhead.py: the regex check's p99). A long text is checked in a
        # worker thread: there, releasing the GIL is what lets the loop go on meanwhile.
        concurrent = len(text) > INLINE_CHARS
        spans: list[TextSpan] = []
        hits: list[int] = []
        lowered: str | None = None
        for i, compiled in enumerate(self._compiled):
            literals, folded = self._literals[i]
            if literals and (not folded or text.isascii()):
                within = text
                if folded:
                    lowered = within = text.lower() if lowered is None else lowered
                if not all(literal in within for literal in literals):
                    continue
            before = len(spans)
            pos = 0
            while pos <= len(text) and len(spans) < MAX_SPANS:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError
                    m = compiled.search(text, pos, timeout=left, concurrent=concurrent)
                except TimeoutError:
                    raise GuardrailError(
                        f"deny pattern #{i + 1} ran out of time ({SCAN_BUDGET_S:.0f} s) on a"
                        f" {len(text)}-character text"
                    ) from None
                if m is None:
                    break
                if m.end() > m.start():
                    spans.append(TextSpan(m.start(), m.end(), "regex"))
                pos = max(m.end(), m.start() + 1)
            if len(spans) > before:
                hits.append(i + 1)
        if not spans:
            return Decision.allow()
        spans.sort(key=lambda s: (s.start, -s.end))
        merged: list[TextSpan] = []
        for span in spans:  # overlapping matches of several patterns become one span
            if merged and span.start < merged[-1].end:
                if span.end > merged[-1].end:
                    merged[-1] = TextSpan(merged[-1].start, span.end, "regex")
                continue
            merged.append(span)
        which = ", ".join(f"#{n}" for n in hits)
        return Decision.block(
            f"the text matches deny pattern {which}", spans=tuple(merged), data={"patterns": hits}
        )
