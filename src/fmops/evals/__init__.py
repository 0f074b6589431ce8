"""Evaluation on the team's own task: suites (cases × targets × scorers), runs as jobs through the
gateway, results with bootstrap intervals and paired significance tests, usable as a CI gate."""

from fmops.evals.service import KIND, EvalService
from fmops.evals.suite import ScorerSpec, Suite, SuiteError, TargetSpec, parse_suite
from fmops.evals.summary import compare_runs, compare_targets, gate, summarize

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
