"""A scorer from a plain Python function, for plugins: decorate it and name it in an entry point.

    # my_scorers.py, in a package you install
    from fmops.scorers import Case, ScorerConfig, scorer_function

    class Keyword(ScorerConfig):
        word: str

    @scorer_function("has_keyword", "Passes when the answer mentions a word", config=Keyword)
    def has_keyword(case: Case, config: Keyword) -> bool:
        return config.word in case.output_text

    # pyproject.toml of that package
    [project.entry-points."fmops.scorers"]
    has_keyword = "my_scorers:has_keyword"

The decorator returns a `Scorer` class, so the registry, suites and online evaluators use it like a
built-in one. The function takes the case (and the validated config, when a config model is given)
and returns a bool (1.0 "pass" / 0.0 "fail"), a number in 0..1, or a full `ScoreResult`. Anything
else, or a number outside 0..1, is a `ScorerError`: that case is recorded as errored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from fmops.scorers.base import Case, Scorer, ScorerConfig, ScorerError, ScoreResult


class NoConfig(ScorerConfig):
    """A function scorer without options: any key is refused."""


def scorer_function(
    name: str,
    description: str,
    *,
    config: type[ScorerConfig] | None = None,
    needs_expected: bool = False,
) -> Callable[[Callable[..., Any]], type[Scorer[Any]]]:
    """Turn `fn(case)` (or `fn(case, config)` with a config model) into a registered-able Scorer class."""

    def wrap(fn: Callable[..., Any]) -> type[Scorer[Any]]:
        def score(self: Scorer[Any], case: Case) -> ScoreResult:
            returned = fn(case, self.config) if config is not None else fn(case)
            return as_result(returned, name)

        attributes: dict[str, Any] = {
            "name": name,
            "description": description,
            "config_model": config or NoConfig,
            "needs_expected": needs_expected,
            "score": score,
            "__doc__": fn.__doc__ or description,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,
            "function": staticmethod(fn),
        }
        annotations: dict[str, Any] = {k: ClassVar[Any] for k in ("name", "description", "config_model")}
        attributes["__annotations__"] = annotations
        return type(fn.__name__, (Scorer,), attributes)

    return wrap


def as_result(returned: Any, name: str) -> ScoreResult:
    """A function scorer's return value as a ScoreResult; ScorerError when it is not one."""
    if isinstance(returned, ScoreResult):
        if returned.value is not None and not 0.0 <= returned.value <= 1.0:
            raise ScorerError(f"scorer {name!r} returned {returned.value!r}; a score must be within 0..1")
        return returned
    if isinstance(returned, bool):
        return ScoreResult.passed(returned)
    if isinstance(returned, int | float):
        value = float(returned)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ScorerError(f"scorer {name!r} returned {returned!r}; a score must be within 0..1")
        return ScoreResult(value)
    raise ScorerError(
        f"scorer {name!r} returned a {type(returned).__name__}; "
        "return a bool, a number in 0..1 or a ScoreResult"
    )
