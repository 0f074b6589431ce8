"""Regular expressions written by users, run on model output without letting one hang the server.

Python's `re` has no time limit and holds the GIL while it backtracks, so a pattern like `(a+)+$`
on a long output would freeze every request of the process. The `regex` package (a superset of
`re`'s syntax) takes a `timeout` per call and releases the GIL while matching (`concurrent=True`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import regex

# Per match; a sane pattern on a long output takes microseconds. `regex` checks the clock now and
# then, so a runaway match stops within a few times this.
MATCH_TIMEOUT_S = 0.1
MAX_PATTERN_CHARS = 2000


class PatternTimeout(Exception):
    """The pattern took longer than MATCH_TIMEOUT_S on this text."""


def check_pattern(pattern: str, flags: int = 0) -> str:
    """The pattern if it compiles; a ValueError saying what is wrong otherwise (for config validators)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern is {len(pattern)} characters; the most allowed is {MAX_PATTERN_CHARS}")
    try:
        compile_pattern(pattern, flags)
    except regex.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


@lru_cache(maxsize=512)
def compile_pattern(pattern: str, flags: int = 0) -> Any:
    # V0: the same semantics as Python's `re`, which is what users write.
    return regex.compile(pattern, flags | regex.VERSION0)


def search(pattern: str, text: str, flags: int = 0, *, full: bool = False) -> bool:
    """Whether `pattern` matches `text` (anywhere, or the whole of it); PatternTimeout when too slow."""
    compiled = compile_pattern(pattern, flags)
    try:
        if full:
            return compiled.fullmatch(text, timeout=MATCH_TIMEOUT_S, concurrent=True) is not None
        return compiled.search(text, timeout=MATCH_TIMEOUT_S, concurrent=True) is not None
    except TimeoutError:
        raise PatternTimeout(
            f"the pattern took more than {MATCH_TIMEOUT_S * 1000:.0f} ms on a {len(text)}-character output"
            " (catastrophic backtracking?); simplify it, e.g. avoid nested repeats like (a+)+"
        ) from None
