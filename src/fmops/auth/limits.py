"""Changing the rate limits and budget of a key or a project.

A change names only what it changes: a field left `UNSET` keeps its value, None removes the limit.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from fmops.errors import UserError
from fmops.store.models import ApiKey, Project

BUDGET_PERIODS = ("day", "month", "total")


class _Unset(enum.Enum):
    UNSET = "unset"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class LimitChanges:
    rpm: int | _Unset | None = UNSET
    tpm: int | _Unset | None = UNSET
    budget: float | _Unset | None = UNSET
    budget_period: str | _Unset = UNSET

    def check(self) -> LimitChanges:
        """Raise a UserError naming the first bad value; return self."""
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if isinstance(value, int) and not 1 <= value <= 1_000_000_000:
                raise UserError(f"{name} must be between 1 and 1000000000, or null for no limit", param=name)
        if isinstance(self.budget, float | int) and not (math.isfinite(self.budget) and self.budget >= 0):
            raise UserError("budget must be a number >= 0, or null for no budget", param="budget")
        if self.budget_period is not UNSET and self.budget_period not in BUDGET_PERIODS:
            raise UserError(
                f"budget_period must be one of {', '.join(BUDGET_PERIODS)}", param="budget_period"
            )
        return self

    def apply(self, target: ApiKey | Project) -> None:
        if self.rpm is not UNSET:
            target.rpm_limit = self.rpm
        if self.tpm is not UNSET:
            target.tpm_limit = self.tpm
        if self.budget is not UNSET:
            target.budget = None if self.budget is None else float(self.budget)
        if self.budget_period is not UNSET:
            target.budget_period = self.budget_period
