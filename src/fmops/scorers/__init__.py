"""Scorers: judge one case (a live trace, or a dataset record) and return a normalised score.

Online evaluators run them on sampled traces; offline evaluation runs the same scorers on datasets.
Third parties add scorers under the `fmops.scorers` entry-point group, like the built-ins.
"""

from fmops.scorers.base import (
    Case,
    ChatFn,
    Scorer,
    ScorerConfig,
    ScorerError,
    ScoreResult,
    ScorerUnavailable,
)
from fmops.scorers.registry import build, get_scorer, register, scorers, unregister

__all__ = [
    "Case",
    "ChatFn",
    "ScoreResult",
    "Scorer",
    "ScorerConfig",
    "ScorerError",
    "ScorerUnavailable",
    "build",
    "get_scorer",
    "register",
    "scorers",
    "unregister",
]
