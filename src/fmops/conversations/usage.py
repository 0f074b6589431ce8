"""A person's usage against their quota, for the chat's meter.

Read from the `spend` table the gateway's trace writer keeps (`fmops.gateway.spend`), in the
budget period the limits use (`fmops.gateway.limits`): the meter and the 429 agree on what was
spent. Signed in with a key: that key's spend against its limits. Signed in with a password (a
session acts as no key): the project's spend against the project's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from fmops.auth import Principal
from fmops.gateway.spend import key_scope, period_end, period_label, project_scope
from fmops.store import Store, utcnow
from fmops.store.models import Spend


@dataclass(frozen=True, slots=True)
class Meter:
    scope: str  # "key" or "project"
    name: str  # what the person reads: "your key", "project default"
    period: str  # day, month or total
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float
    budget: float | None
    rpm: int | None
    tpm: int | None
    resets_at: datetime | None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.cost >= self.budget

    @property
    def percent(self) -> float | None:
        """Share of the budget spent, 0-100; None without a budget."""
        if self.budget is None:
            return None
        if self.budget <= 0:
            return 100.0
        return min(100.0, 100.0 * self.cost / self.budget)


def usage(store: Store, principal: Principal, *, with_key: bool, now: datetime | None = None) -> list[Meter]:
    """The meters to show: the key's (signed in with one), and the project's when it has limits or
    the person signed in with a password."""
    now = now or utcnow()
    wanted: list[tuple[str, str, str, str, float | None, int | None, int | None]] = []
    if with_key:
        p = principal
        wanted.append(
            ("key", "your key", key_scope(p.key_id), p.key_budget_period, p.key_budget, p.key_rpm, p.key_tpm)
        )
    project_limited = any(
        v is not None for v in (principal.project_budget, principal.project_rpm, principal.project_tpm)
    )
    if not with_key or project_limited:
        wanted.append(
            (
                "project",
                f"project {principal.project_name}",
                project_scope(principal.project_id),
                principal.project_budget_period,
                principal.project_budget,
                principal.project_rpm,
                principal.project_tpm,
            )
        )
    meters = []
    with store.session() as session:
        for scope, name, sql_scope, period, budget, rpm, tpm in wanted:
            row = session.scalar(
                select(Spend).where(Spend.scope == sql_scope, Spend.period == period_label(period, now))
            )
            meters.append(
                Meter(
                    scope=scope,
                    name=name,
                    period=period,
                    requests=row.requests if row else 0,
                    input_tokens=row.input_tokens if row else 0,
                    output_tokens=row.output_tokens if row else 0,
                    cost=float(row.cost) if row else 0.0,
                    budget=budget,
                    rpm=rpm,
                    tpm=tpm,
                    resets_at=period_end(period, now),
                )
            )
    return meters
