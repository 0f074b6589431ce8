"""Prompt optimisation (issue 20): propose better versions of a prompt from an eval suite's cases,
score every candidate through the gateway within a call budget, prove the best on held-out cases
and push it as a new version. Optimizers are plugins (entry-point group `fmops.optimizers`)."""

from fmops.optimizers.base import (
    ENTRY_POINT_GROUP,
    BudgetSpent,
    Candidate,
    Optimizer,
    get_optimizer,
    optimizer_names,
)

__all__ = ["ENTRY_POINT_GROUP", "BudgetSpent", "Candidate", "Optimizer", "get_optimizer", "optimizer_names"]
