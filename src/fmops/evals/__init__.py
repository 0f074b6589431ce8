"""Evaluation on the team's own task: suites (cases × targets × scorers), runs as jobs through the
gateway, results with bootstrap intervals and paired significance tests, usable as a CI gate.

The names below load on first use: the server's background services import `fmops.evals.cache`,
which must not bring the whole evals stack (the gateway, numpy) into every process that builds a
platform (each CLI command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmops.evals.service import KIND, EvalService
    from fmops.evals.suite import ScorerSpec, Suite, SuiteError, TargetSpec, parse_suite
    from fmops.evals.summary import compare_runs, compare_targets, gate, summarize

_HOME = {
    "KIND": "fmops.evals.service",
    "EvalService": "fmops.evals.service",
    "ScorerSpec": "fmops.evals.suite",
    "Suite": "fmops.evals.suite",
    "SuiteError": "fmops.evals.suite",
    "TargetSpec": "fmops.evals.suite",
    "parse_suite": "fmops.evals.suite",
    "compare_runs": "fmops.evals.summary",
    "compare_targets": "fmops.evals.summary",
    "gate": "fmops.evals.summary",
    "summarize": "fmops.evals.summary",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'fmops.evals' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


__all__ = [
    "KIND",
    "EvalService",
    "ScorerSpec",
    "Suite",
    "SuiteError",
    "TargetSpec",
    "compare_runs",
    "compare_targets",
    "gate",
    "parse_suite",
    "summarize",
]
