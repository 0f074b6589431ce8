"""Scorers: judge one case (a live trace, or a dataset record) and return a normalised score.

Online evaluators run them on sampled traces; offline evaluation runs the same scorers on datasets.
Third parties add scorers under the `fmops.scorers` entry-point group, like the built-ins (a plain
function becomes one with `scorer_function`). How a runner uses them: `build(name, config)` once,
`score(case)` per case, then `aggregate(results)` per target for the run-level metric (see base).
"""

from fmops.scorers.base import (
    Aggregate,
    Case,
    ChatFn,
    Scorer,
    ScorerConfig,
    ScorerError,
    ScoreResult,
    ScorerUnavailable,
    mean_aggregate,
)
from fmops.scorers.function import scorer_function
from fmops.scorers.registry import (
    build,
    describe,
    find_scorer,
    get_scorer,
    register,
    scorer_names,
    scorers,
    unregister,
)

__all__ = [
    "Aggregate",
    "Case",
    "ChatFn",
    "ScoreResult",
    "Scorer",
    "ScorerConfig",
    "ScorerError",
    "ScorerUnavailable",
    "build",
    "describe",
    "find_scorer",
    "get_scorer",
    "mean_aggregate",
    "register",
    "scorer_function",
    "scorer_names",
    "scorers",
    "unregister",
]
