"""Rate limits and budgets: who may call a model now, and what each call cost.

Each key and each project may have a requests-per-minute and a tokens-per-minute limit, and a
budget per day, month or in total (in the currency of the models' prices). Before a call the
gateway asks `admit`, which refuses when a budget is spent or a window is full, and reserves the
call's estimated tokens; after the call `settle` replaces the estimate with the real tokens and
adds the cost to the spend counters.

Counters live behind `fmops.counters.Counters` (in this process, or Redis for every replica).
Spend also lives in SQL, written by the trace writer (`fmops.gateway.spend.record_spend`): a
spend counter is seeded from SQL the first time a scope's period is seen, with set-if-absent, so
budgets survive restarts and replicas agree.

Exceptions (all `FmopsError`):

LimitError (429)          carries `retry_after` (seconds, or None when waiting does not help)
├── RateLimited           a requests or tokens per minute window is full; type "requests"/"tokens"
└── BudgetExceeded        spend reached a budget; type and code "insufficient_quota"
RequestTooLarge (400)     the call alone needs more tokens than a tokens-per-minute limit allows
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from fmops.auth import Principal
from fmops.counters import Counters, Hold, Increment, Window, WindowResult
from fmops.errors import FmopsError, UserError
from fmops.gateway.spend import (
    key_scope,
    load_spend,
    period_end,
    period_label,
    period_start,
    project_scope,
)
from fmops.store import Store

WINDOW_SECONDS = 60.0
_SPEND_GRACE_SECONDS = 86_400.0
_SEEDED_MAX = 100_000
_PLANS_MAX = 10_000
# A held cost is given back when its call settles; one whose process died is dropped this long after
# the hold counter last changed (longer than any call may run).
_HOLD_TTL_SECONDS = 3_600.0


class LimitError(FmopsError):
    status_code = 429
    retry_after: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers for the error response: Retry-After in whole seconds when waiting helps."""
        if self.retry_after is None or math.isinf(self.retry_after):
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class RateLimited(LimitError):
    """A rate-limit window is full. Attributes say which and for how long."""

    code = "rate_limit_exceeded"

    def __init__(
        self,
        *,
        scope: str,
        scope_id: str,
        who: str,
        metric: str,
        limit: int,
        used: float,
        requested: int,
        retry_after: float,
    ) -> None:
        unit = "requests" if metric == "rpm" else "tokens"
        super().__init__(
            f"Rate limit reached for {who} on {unit} per minute ({metric.upper()}): limit {limit}, "
            f"used {math.ceil(used)}, requested {requested}. Try again in {max(retry_after, 0.1):.1f}s."
        )
        self.error_type = unit
        self.scope = scope  # "key" or "project"
        self.scope_id = scope_id
        self.metric = metric  # "rpm" or "tpm"
        self.limit = limit
        self.used = used
        self.requested = requested
        self.retry_after = retry_after


class BudgetExceeded(LimitError):
    """Spend in the current period reached a budget."""

    error_type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(
        self,
        *,
        scope: str,
        scope_id: str,
        who: str,
        budget: float,
        spent: float,
        period: str,
        label: str,
        resets_at: datetime | None,
        now: datetime,
        hint: str,
    ) -> None:
        when = {"day": "today", "month": "this month", "total": "in total"}[period]
        if resets_at is None:
            resets = "this budget does not reset"
        else:
            resets = f"it resets at {resets_at:%Y-%m-%d %H:%M} UTC"
        super().__init__(
            f"Budget exhausted for {who}: spent {_money(spent)} of {_money(budget)} {when} "
            f"({label}); {resets}. {hint}"
        )
        self.scope = scope
        self.scope_id = scope_id
        self.budget = budget
        self.spent = spent
        self.period = period
        self.resets_at = resets_at
        self.retry_after = None if resets_at is None else max((resets_at - now).total_seconds(), 1.0)


class RequestTooLarge(UserError):
    """One call that needs more tokens than a tokens-per-minute limit: retrying cannot help."""

    code = "request_too_large"

    def __init__(self, *, who: str, limit: int, requested: int) -> None:
        super().__init__(
            f"Request too large for {who}: it may use {requested} tokens (prompt and max_tokens), more "
            f"than its limit of {limit} tokens per minute. Shorten the messages or lower max_tokens, "
            "or ask an admin to raise the limit.",
            param="messages",
        )
        self.limit = limit
        self.requested = requested


def _money(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


@dataclass(frozen=True, slots=True)
class Admission:
    """What `admit` reserved; give it back to `settle` so the estimate is replaced, not added to."""

    reserved_tokens: int = 0
    token_windows: tuple[str, ...] = ()
    held: float = 0.0  # the call's estimated cost, held on each of `hold_keys` while it runs
    hold_keys: tuple[str, ...] = ()


NO_RESERVATION = Admission()


class _Budget(NamedTuple):
    """A budget resolved for the current period."""

    scope: str  # "key" or "project"
    scope_id: str
    budget: float
    period: str
    counter: str  # counter key, e.g. "spend:key:<id>:2026-11"
    sql_scope: str
    label: str
    ttl: float | None
    resets_at: datetime | None


@dataclass(slots=True, eq=False)
class _Plan:
    """What the limits of one principal need, worked out once and reused by its calls."""

    principal: Principal
    rpm: list[Window]  # amount 1, ready to use
    tpm: list[tuple[str, int, str]]  # (counter key, limit, "key" | "project")
    tpm_keys: tuple[str, ...]
    rules: list[tuple[str, str, float, str, str]]  # (scope, scope id, budget, period, SQL scope)
    budgets: list[_Budget] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)  # the spend counter of each of `budgets`
    # `budgets` hold while the clock is in [budgets_from, budgets_until).
    budgets_from: float = math.inf
    budgets_until: float = -math.inf


class Limits:
    """Rate limits and budgets over a `Counters` backend, with spend seeded from SQL."""

    def __init__(
        self,
        counters: Counters,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.counters = counters
        self.store = store
        self.window_seconds = window_seconds
        self._clock = clock
        # Spend counters known to be seeded from SQL by this process.
        self._seeded: set[str] = set()
        self._plans: dict[str, _Plan] = {}

    # --- the two calls the gateway makes -----------------------------------------------------

    async def admit(
        self, principal: Principal, estimated_tokens: int = 0, estimated_cost: float = 0.0
    ) -> Admission:
        """Refuse the call (raise) or reserve it under every limit of its key and project.

        `estimated_tokens`: the prompt's tokens plus the output limit the call asked for;
        `estimated_cost`: what those tokens cost at the model's prices. The cost is held on the
        budgets until the call settles, and a call is admitted only while spend plus what is held
        is below each budget: calls racing for a budget's last units overshoot it by at most one
        call's estimated cost. Raises BudgetExceeded, RateLimited or RequestTooLarge.
        """
        plan = self._plan(principal)
        held: tuple[str, ...] = ()
        cost = max(float(estimated_cost), 0.0)
        if plan.rules:
            await self._check_budgets(plan)
            if cost > 0:
                held = await self._hold(plan, cost)
        if not plan.rpm and not plan.tpm:
            return Admission(held=cost, hold_keys=held) if held else NO_RESERVATION
        tokens = max(int(estimated_tokens), 1)
        windows = list(plan.rpm)
        try:
            for key, limit, scope in plan.tpm:
                if tokens > limit:
                    raise RequestTooLarge(who=_who(principal, scope), limit=limit, requested=tokens)
                windows.append(Window(key, tokens, self.window_seconds, limit))
            result = await self.counters.hit(windows)
            if not result.allowed:
                raise self._rate_limited(principal, windows, result)
        except FmopsError:
            if held:
                await self.counters.incr([Increment(k, -cost, _HOLD_TTL_SECONDS) for k in held])
            raise
        if not plan.tpm and not held:
            return NO_RESERVATION
        return Admission(tokens if plan.tpm else 0, plan.tpm_keys, cost if held else 0.0, held)

    async def settle(
        self,
        principal: Principal,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        admission: Admission | None = None,
    ) -> None:
        """Count what a call used: its real tokens in place of the reservation, its cost in spend.

        Pass the `Admission` that `admit` returned; without it the reservation stays counted too.
        A call that failed settles with zero tokens and zero cost, which releases its reservation.
        """
        plan = self._plan(principal)
        admission = admission or NO_RESERVATION
        if plan.tpm or admission.token_windows:
            used = max(int(input_tokens), 0) + max(int(output_tokens), 0)
            # Usually the windows reserved are the plan's own: no set to build.
            keys = (
                plan.tpm_keys
                if admission.token_windows in (plan.tpm_keys, ())
                else {key for key, _, _ in plan.tpm}.union(admission.token_windows)
            )
            adjustments = []
            for key in keys:
                reserved = admission.reserved_tokens if key in admission.token_windows else 0
                if used != reserved:
                    adjustments.append(Window(key, used - reserved, self.window_seconds))
            if adjustments:
                await self.counters.adjust(adjustments)
        changes = [Increment(k, -admission.held, _HOLD_TTL_SECONDS) for k in admission.hold_keys]
        if cost > 0 and plan.rules:
            budgets = self._budgets(plan)
            if any(b.counter not in self._seeded for b in budgets):
                await self._seed(budgets)
            changes += [Increment(b.counter, cost, b.ttl) for b in budgets]
        if changes:
            await self.counters.incr(changes)

    # --- plans ---------------------------------------------------------------------------------

    def _plan(self, p: Principal) -> _Plan:
        plan = self._plans.get(p.key_id)
        if plan is not None:
            if plan.principal is p:
                return plan
            if plan.principal == p:  # the same key verified again: same limits
                plan.principal = p
                return plan
        seconds = self.window_seconds
        rpm = []
        if p.key_rpm is not None:
            rpm.append(Window(f"rpm:key:{p.key_id}", 1, seconds, p.key_rpm))
        if p.project_rpm is not None:
            rpm.append(Window(f"rpm:project:{p.project_id}", 1, seconds, p.project_rpm))
        tpm = []
        if p.key_tpm is not None:
            tpm.append((f"tpm:key:{p.key_id}", p.key_tpm, "key"))
        if p.project_tpm is not None:
            tpm.append((f"tpm:project:{p.project_id}", p.project_tpm, "project"))
        rules = []
        if p.key_budget is not None:
            rules.append(("key", p.key_id, p.key_budget, p.key_budget_period, key_scope(p.key_id)))
        if p.project_budget is not None:
            rules.append(
                (
                    "project",
                    p.project_id,
                    p.project_budget,
                    p.project_budget_period,
                    project_scope(p.project_id),
                )
            )
        plan = _Plan(p, rpm, tpm, tuple(key for key, _, _ in tpm), rules)
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[p.key_id] = plan
        return plan

    # --- budgets -------------------------------------------------------------------------------

    def _budgets(self, plan: _Plan) -> list[_Budget]:
        """The plan's budgets in the current periods (resolved again when a period ends)."""
        now = self._clock()
        if plan.budgets_from <= now < plan.budgets_until:
            return plan.budgets
        at = datetime.fromtimestamp(now, UTC)
        budgets, starts, ends = [], -math.inf, math.inf
        for scope, scope_id, budget, period, sql_scope in plan.rules:
            label = period_label(period, at)
            began, resets_at = period_start(period, at), period_end(period, at)
            if began is not None:
                starts = max(starts, began.timestamp())
            ttl = None
            if resets_at is not None:
                ends = min(ends, resets_at.timestamp())
                # Counters outlive their period a little (clock skew between replicas).
                ttl = resets_at.timestamp() - now + _SPEND_GRACE_SECONDS
            counter = f"spend:{sql_scope}:{label}"
            budgets.append(
                _Budget(scope, scope_id, budget, period, counter, sql_scope, label, ttl, resets_at)
            )
        plan.budgets, plan.budgets_from, plan.budgets_until = budgets, starts, ends
        plan.counters = [b.counter for b in budgets]
        return budgets

    async def _check_budgets(self, plan: _Plan) -> None:
        p = plan.principal
        budgets = self._budgets(plan)
        spent = await self.counters.get_floats(plan.counters)
        if None in spent:
            missing = [b for b, value in zip(budgets, spent, strict=True) if value is None]
            await self._seed(missing, force=True)
            spent = await self.counters.get_floats(plan.counters)
        for budget, value in zip(budgets, spent, strict=True):
            if (value or 0.0) >= budget.budget:
                raise self._budget_exceeded(p, budget, value or 0.0)

    def _budget_exceeded(self, p: Principal, budget: _Budget, spent: float) -> BudgetExceeded:
        hint = (
            f"Ask an admin to raise it (`fmops keys limits {p.key_id} --budget N`)."
            if budget.scope == "key"
            else "Ask an admin to raise it (PATCH /api/projects/current/limits)."
        )
        return BudgetExceeded(
            scope=budget.scope,
            scope_id=budget.scope_id,
            who=_who(p, budget.scope),
            budget=budget.budget,
            spent=spent,
            period=budget.period,
            label=budget.label,
            resets_at=budget.resets_at,
            now=datetime.fromtimestamp(self._clock(), UTC),
            hint=hint,
        )

    async def _hold(self, plan: _Plan, cost: float) -> tuple[str, ...]:
        """Hold `cost` on every budget of the plan, or raise BudgetExceeded naming the one without room."""
        budgets = self._budgets(plan)
        holds = [Hold(b.counter, "held:" + b.counter, cost, b.budget, _HOLD_TTL_SECONDS) for b in budgets]
        blocked, found = await self.counters.hold(holds)
        if blocked is not None:
            raise self._budget_exceeded(plan.principal, budgets[blocked], found[blocked])
        return tuple(h.hold_key for h in holds)

    async def _seed(self, budgets: list[_Budget], *, force: bool = False) -> None:
        """Create missing spend counters from what SQL recorded (set-if-absent: never overwrites)."""
        todo = [b for b in budgets if force or b.counter not in self._seeded]
        if not todo:
            return
        if self.store is not None:
            values = await asyncio.to_thread(self._load, [(b.sql_scope, b.label) for b in todo])
        else:
            values = [0.0] * len(todo)
        for budget, value in zip(todo, values, strict=True):
            await self.counters.seed(budget.counter, value, budget.ttl)
        if len(self._seeded) > _SEEDED_MAX:
            self._seeded.clear()
        self._seeded.update(b.counter for b in todo)

    def _load(self, wanted: list[tuple[str, str]]) -> list[float]:
        assert self.store is not None
        with self.store.session() as session:
            return [load_spend(session, scope, label) for scope, label in wanted]

    # --- errors --------------------------------------------------------------------------------

    def _rate_limited(self, p: Principal, windows: list[Window], result: WindowResult) -> RateLimited:
        assert result.blocked is not None
        window = windows[result.blocked]
        metric, scope = window.key.split(":", 2)[:2]
        return RateLimited(
            scope=scope,
            scope_id=p.key_id if scope == "key" else p.project_id,
            who=_who(p, scope),
            metric=metric,
            limit=int(window.limit),
            used=result.usage[result.blocked],
            requested=int(window.amount),
            # Never infinite: admit refuses calls larger than a limit before they reach a window.
            retry_after=min(result.retry_after, 2 * window.seconds),
        )


def _who(p: Principal, scope: str) -> str:
    return f"key {p.key_id}" if scope == "key" else f"project {p.project_name!r}"
