"""Rate-limit and budget options shared by `fmops keys limits` and `fmops projects limits`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import typer

from fmops.auth.limits import BUDGET_PERIODS, UNSET, LimitChanges

N = TypeVar("N", int, float)
_NO_LIMIT = ("none", "off", "unlimited")


# The options of `fmops keys limits` and `fmops projects limits`.
RPM = typer.Option(None, "--rpm", help="Requests per minute, or 'none'")
TPM = typer.Option(None, "--tpm", help="Tokens (input + output) per minute, or 'none'")
BUDGET = typer.Option(
    None, "--budget", help="Spend allowed per period, in the models' price currency, or 'none'"
)
PERIOD = typer.Option(None, "--period", help="Budget period: " + ", ".join(BUDGET_PERIODS))


class HasLimits(Protocol):
    rpm_limit: int | None
    tpm_limit: int | None
    budget: float | None
    budget_period: str


def _limit(value: str, kind: Callable[[str], N], option: str) -> N | None:
    """A limit option: a number, or none/off/unlimited to remove the limit."""
    if value.strip().lower() in _NO_LIMIT:
        return None
    try:
        return kind(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a number (or 'none' to remove the limit)", param_hint=option
        ) from None


def limit_changes(rpm: str | None, tpm: str | None, budget: str | None, period: str | None) -> LimitChanges:
    """Options left out keep their value; 'none' removes a limit."""
    return LimitChanges(
        rpm=UNSET if rpm is None else _limit(rpm, int, "--rpm"),
        tpm=UNSET if tpm is None else _limit(tpm, int, "--tpm"),
        budget=UNSET if budget is None else _limit(budget, float, "--budget"),
        budget_period=UNSET if period is None else period,
    )


def describe_limits(target: HasLimits) -> str:
    shown = "unlimited"
    per = "in total" if target.budget_period == "total" else f"per {target.budget_period}"
    budget = shown if target.budget is None else f"{target.budget:g} {per}"
    return f"rpm {target.rpm_limit or shown}, tpm {target.tpm_limit or shown}, budget {budget}"
