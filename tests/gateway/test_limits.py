"""Rate limits and budgets on both databases: per-key and per-project RPM/TPM windows, token
reservations corrected on settle, budgets refused with a message that says what was spent and when it
resets, spend persisted in SQL by the trace writer and reloaded after a restart, period rollover, and
replicas sharing spend through Redis."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fmops.auth import AuthService, Principal, Role
from fmops.auth.limits import UNSET, LimitChanges
from fmops.counters import MemoryCounters
from fmops.errors import NotFound, PermissionDenied, UserError
from fmops.gateway.limits import BudgetExceeded, Limits, RateLimited, RequestTooLarge
from fmops.gateway.spans import CallRecord
from fmops.gateway.spend import period_end, period_label, period_start, record_spend, spend_rows
from fmops.store import Store
from fmops.store.models import ApiKey, Spend
from fmops.tracing import TraceWriter
from support.redisdb import redis_counters, unique_prefix

pytestmark = pytest.mark.anyio

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime = NOON) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


@dataclass
class Tenancy:
    """A bootstrapped store, with helpers to make keys and projects with limits."""

    auth: AuthService
    store: Store
    plaintexts: dict[str, str] = field(default_factory=dict)

    def key(self, name: str, *, project: str = "default", **limits: Any) -> Principal:
        key, plaintext = self.auth.create_key(
            name=name, role=Role.consumer, creator=None, project=project, user="admin"
        )
        if limits:
            self.auth.set_key_limits(None, key.id, LimitChanges(**limits))
        self.plaintexts[key.id] = plaintext
        return self.auth.authenticate(plaintext)

    def reload(self, p: Principal) -> Principal:
        """The principal again, with the limits now in the store (as once the key cache expires)."""
        return self.auth.authenticate(self.plaintexts[p.key_id])

    def project(self, name: str, **limits: Any) -> str:
        if name != "default":
            project_id = self.auth.create_project(name).id
            self.auth.create_user("admin", role=Role.admin, project_id=project_id)
        self.auth.set_project_limits(None, LimitChanges(**limits), project=name)
        return name

    def spend(self) -> dict[tuple[str, str], tuple[float, int, int, int]]:
        with self.store.session() as session:
            rows = session.scalars(select(Spend)).all()
            return {(r.scope, r.period): (r.cost, r.input_tokens, r.output_tokens, r.requests) for r in rows}


@pytest.fixture
def tenancy(store: Store, tmp_path: Path) -> Tenancy:
    auth = AuthService(store, cache_seconds=0)
    assert auth.bootstrap(tmp_path / "admin.key")
    return Tenancy(auth, store)


def limits_for(store: Store | None, clock: Callable[[], float] | None = None, **kwargs: Any) -> Limits:
    return Limits(MemoryCounters(), store, clock=clock or Clock(), **kwargs)


# --- limits on principals -----------------------------------------------------------------------


def test_principal_carries_the_limits_of_its_key_and_project(tenancy: Tenancy) -> None:
    tenancy.project("default", rpm=100, budget=50.0, budget_period="day")
    p = tenancy.key("limited", rpm=10, tpm=20_000, budget=2.5, budget_period="total")
    assert (p.key_rpm, p.key_tpm, p.key_budget, p.key_budget_period) == (10, 20_000, 2.5, "total")
    assert (p.project_rpm, p.project_tpm, p.project_budget, p.project_budget_period) == (
        100,
        None,
        50.0,
        "day",
    )

    tenancy.auth.set_key_limits(None, p.key_id, LimitChanges(tpm=None, budget=UNSET, rpm=5))
    with tenancy.store.session() as session:
        key = session.get(ApiKey, p.key_id)
        assert key is not None
        assert (key.rpm_limit, key.tpm_limit, key.budget, key.budget_period) == (5, None, 2.5, "total")


def test_limit_changes_are_checked(tenancy: Tenancy) -> None:
    p = tenancy.key("k")
    bad = [
        (LimitChanges(rpm=0), "rpm"),
        (LimitChanges(tpm=-5), "tpm"),
        (LimitChanges(budget=-1.0), "budget"),
        (LimitChanges(budget=math.nan), "budget"),
        (LimitChanges(budget_period="week"), "budget_period"),
    ]
    for changes, param in bad:
        with pytest.raises(UserError) as caught:
            tenancy.auth.set_key_limits(None, p.key_id, changes)
        assert caught.value.param == param
    with pytest.raises(PermissionDenied):
        tenancy.auth.set_key_limits(p, p.key_id, LimitChanges(rpm=1))
    with pytest.raises(PermissionDenied):
        tenancy.auth.set_project_limits(p, LimitChanges(rpm=1))
    tenancy.project("other")
    outsider_admin = tenancy.auth.authenticate(
        tenancy.auth.create_key(name="o", role=Role.admin, creator=None, project="other", user="admin")[1]
    )
    with pytest.raises(NotFound):
        tenancy.auth.set_key_limits(outsider_admin, p.key_id, LimitChanges(rpm=1))


# --- rate limits --------------------------------------------------------------------------------


async def test_requests_per_minute_per_key(tenancy: Tenancy) -> None:
    limits = limits_for(tenancy.store)
    limited = tenancy.key("limited", rpm=3)
    free = tenancy.key("free")
    for _ in range(3):
        await limits.admit(limited, 10)
    with pytest.raises(RateLimited) as caught:
        await limits.admit(limited, 10)
    error = caught.value
    assert (error.status_code, error.error_type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert (error.scope, error.scope_id, error.metric, error.limit, error.requested) == (
        "key",
        limited.key_id,
        "rpm",
        3,
        1,
    )
    assert 0 < error.retry_after <= 120
    assert error.headers == {"Retry-After": str(math.ceil(error.retry_after))}
    assert f"key {limited.key_id}" in error.message
    assert "requests per minute (RPM): limit 3, used 3, requested 1" in error.message
    for _ in range(20):
        await limits.admit(free, 10)  # another key of the same project is not affected


async def test_requests_per_minute_per_project_and_refusals_count_nowhere(tenancy: Tenancy) -> None:
    tenancy.project("default", rpm=2)
    first = tenancy.key("first", rpm=3)
    second = tenancy.key("second")
    limits = limits_for(tenancy.store)
    await limits.admit(first)
    await limits.admit(second)
    with pytest.raises(RateLimited) as caught:
        await limits.admit(first)
    assert (caught.value.scope, caught.value.scope_id) == ("project", first.project_id)
    assert "project 'default'" in caught.value.message
    with pytest.raises(RateLimited):
        await limits.admit(second)
    # Lift the project's limit: the refused call took nothing from the first key's own window.
    tenancy.project("default", rpm=None)
    first = tenancy.reload(first)
    await limits.admit(first)
    await limits.admit(first)
    with pytest.raises(RateLimited) as caught:
        await limits.admit(first)
    assert caught.value.scope == "key"


async def test_tokens_per_minute_reserve_the_estimate_and_settle_the_real_use(tenancy: Tenancy) -> None:
    p = tenancy.key("tpm", tpm=1000)
    limits = limits_for(tenancy.store)
    admission = await limits.admit(p, 600)
    assert admission.reserved_tokens == 600
    with pytest.raises(RateLimited) as caught:
        await limits.admit(p, 600)
    assert (caught.value.error_type, caught.value.metric, caught.value.used) == ("tokens", "tpm", 600)
    assert "tokens per minute (TPM): limit 1000, used 600, requested 600" in caught.value.message
    # The call used far less than estimated: the difference is given back.
    await limits.settle(p, 50, 50, 0.0, admission)
    second = await limits.admit(p, 600)
    # A failed call settles with nothing and releases its reservation.
    await limits.settle(p, 0, 0, 0.0, second)
    await limits.admit(p, 800)
    # Settling without the admission counts the real tokens on top of the reservation.
    await limits.settle(p, 100, 0, 0.0)
    with pytest.raises(RateLimited):
        await limits.admit(p, 1)


async def test_a_call_larger_than_a_token_limit_is_a_clear_400(tenancy: Tenancy) -> None:
    tenancy.project("default", tpm=5000)
    limits = limits_for(tenancy.store)
    p = tenancy.key("small", tpm=1000)
    with pytest.raises(RequestTooLarge) as caught:
        await limits.admit(p, 1001)
    assert (caught.value.status_code, caught.value.code) == (400, "request_too_large")
    assert "1001 tokens" in caught.value.message
    assert "limit of 1000 tokens per minute" in caught.value.message
    with pytest.raises(RequestTooLarge) as caught:
        await limits.admit(tenancy.key("big"), 6000)
    assert "project 'default'" in caught.value.message


async def test_project_tokens_are_shared_by_its_keys(tenancy: Tenancy) -> None:
    tenancy.project("default", tpm=1000)
    a, b = tenancy.key("a"), tenancy.key("b")
    limits = limits_for(tenancy.store)
    first = await limits.admit(a, 400)
    await limits.admit(b, 400)
    with pytest.raises(RateLimited) as caught:
        await limits.admit(a, 400)
    assert (caught.value.scope, caught.value.metric) == ("project", "tpm")
    await limits.settle(a, 100, 0, 0.0, first)
    await limits.admit(b, 400)


async def test_windows_slide_open_again(tenancy: Tenancy) -> None:
    p = tenancy.key("fast", rpm=2)
    limits = limits_for(tenancy.store, window_seconds=1.0)
    await limits.admit(p)
    await limits.admit(p)
    with pytest.raises(RateLimited) as caught:
        await limits.admit(p)
    await asyncio.sleep(caught.value.retry_after + 0.05)
    await limits.admit(p)


async def test_no_limits_means_no_counters(tenancy: Tenancy) -> None:
    counters = MemoryCounters()
    limits = Limits(counters, tenancy.store)
    p = tenancy.key("free")
    for _ in range(100):
        admission = await limits.admit(p, 10_000)
        await limits.settle(p, 5000, 5000, 1.0, admission)
    assert len(counters) == 0


# --- budgets ------------------------------------------------------------------------------------


async def test_key_budget_refuses_once_spent_with_a_clear_message(tenancy: Tenancy) -> None:
    p = tenancy.key("budget", budget=1.0)
    limits = limits_for(tenancy.store)
    await limits.admit(p)
    await limits.settle(p, 1000, 200, 0.6)
    await limits.admit(p)  # 0.6 of 1.0: still allowed, even if this call will overshoot
    await limits.settle(p, 1000, 200, 0.5)
    with pytest.raises(BudgetExceeded) as caught:
        await limits.admit(p)
    error = caught.value
    assert (error.status_code, error.error_type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert (error.scope, error.scope_id, error.period) == ("key", p.key_id, "month")
    assert (error.budget, error.spent) == (1.0, pytest.approx(1.1))
    assert error.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert error.retry_after == (datetime(2026, 12, 1, tzinfo=UTC) - NOON).total_seconds()
    assert f"Budget exhausted for key {p.key_id}: spent 1.10 of 1.00 this month (2026-11)" in error.message
    assert "resets at 2026-12-01 00:00 UTC" in error.message
    assert f"fmops keys limits {p.key_id} --budget" in error.message


async def test_racing_calls_hold_their_estimated_cost_so_a_budget_overshoots_by_one_call(
    tenancy: Tenancy,
) -> None:
    p = tenancy.key("race", budget=1.0)
    limits = limits_for(tenancy.store)
    await limits.settle(p, 0, 0, 0.7)

    async def call() -> bool:
        try:
            admission = await limits.admit(p, 100, estimated_cost=0.2)
        except BudgetExceeded:
            return False
        await asyncio.sleep(0.01)  # every call is admitted or refused before any settles
        await limits.settle(p, 0, 100, 0.2, admission)
        return True

    # 0.7 spent, each call holds 0.2: 0.7 -> 0.9 -> 1.1, then none: two of 50 pass, 0.1 over.
    assert sum(await asyncio.gather(*(call() for _ in range(50)))) == 2
    with pytest.raises(BudgetExceeded) as caught:
        await limits.admit(p, 100, estimated_cost=0.2)
    assert caught.value.spent == pytest.approx(1.1)  # what was held is given back on settle


async def test_project_budget_covers_all_its_keys(tenancy: Tenancy) -> None:
    tenancy.project("default", budget=0.01, budget_period="day")
    a, b = tenancy.key("a"), tenancy.key("b")
    limits = limits_for(tenancy.store)
    await limits.settle(a, 10, 10, 0.004)
    await limits.settle(b, 10, 10, 0.006)
    with pytest.raises(BudgetExceeded) as caught:
        await limits.admit(a)
    assert "project 'default'" in caught.value.message
    assert "spent 0.01 of 0.01 today (2026-11-26)" in caught.value.message
    assert caught.value.resets_at == datetime(2026, 11, 27, tzinfo=UTC)
    with pytest.raises(BudgetExceeded):
        await limits.admit(tenancy.key("c"))


async def test_zero_budget_refuses_at_once_and_total_never_resets(tenancy: Tenancy) -> None:
    p = tenancy.key("zero", budget=0.0, budget_period="total")
    with pytest.raises(BudgetExceeded) as caught:
        await limits_for(tenancy.store).admit(p)
    assert caught.value.resets_at is None
    assert caught.value.retry_after is None
    assert caught.value.headers == {}
    assert "in total (total); this budget does not reset" in caught.value.message


async def test_budget_period_rolls_over(tenancy: Tenancy) -> None:
    clock = Clock(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    p = tenancy.key("daily", budget=1.0, budget_period="day")
    limits = limits_for(tenancy.store, clock)
    await limits.settle(p, 1, 1, 1.0)
    with pytest.raises(BudgetExceeded) as caught:
        await limits.admit(p)
    assert caught.value.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert caught.value.retry_after == 60
    clock.at += timedelta(minutes=2)
    await limits.admit(p)  # a new day, a new budget
    await limits.settle(p, 1, 1, 0.5)
    await limits.admit(p)


# --- persistence --------------------------------------------------------------------------------


def _span(p: Principal, cost: float, at: datetime = NOON, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": p.project_id,
        "key_id": p.key_id,
        "start_time": at,
        "cost": cost,
        "input_tokens": 100,
        "output_tokens": 20,
        "parent_span_id": None,
        "cache_hit": False,
        **extra,
    }


def test_spend_rows_aggregate_root_calls_into_every_period() -> None:
    p = Principal("k1", "u", "admin", "p1", "default", Role.admin)
    rows = spend_rows(
        [
            _span(p, 0.5),
            _span(p, 0.25),
            _span(p, 9.0, cache_hit=True),  # answered from the cache: nothing spent
            _span(p, 0.0, parent_span_id="abc"),  # a call made inside an app's trace: a call all the same
            _span(p, None, input_tokens=None, output_tokens=None),  # a failed call: a request, no cost
        ]
    )
    expected = {
        (scope, period): (0.75, 300, 60, 4)
        for scope in ("key:k1", "project:p1")
        for period in ("2026-11-26", "2026-11", "total")
    }
    assert {
        (r["scope"], r["period"]): (r["cost"], r["input_tokens"], r["output_tokens"], r["requests"])
        for r in rows
    } == expected
    assert [(r["scope"], r["period"]) for r in rows] == sorted(expected)


def test_record_spend_upserts_and_adds(tenancy: Tenancy) -> None:
    p = tenancy.key("k")
    with tenancy.store.write() as session:
        record_spend(session, [_span(p, 0.5), _span(p, 0.25)])
    with tenancy.store.write() as session:
        record_spend(session, [_span(p, 1.0, at=NOON + timedelta(days=1))])
    spend = tenancy.spend()
    key, project = f"key:{p.key_id}", f"project:{p.project_id}"
    assert spend[(key, "2026-11-26")] == (0.75, 200, 40, 2)
    assert spend[(key, "2026-11-27")] == (1.0, 100, 20, 1)
    assert spend[(key, "2026-11")] == (1.75, 300, 60, 3)
    assert spend[(project, "total")] == (1.75, 300, 60, 3)
    assert len(spend) == 8


async def test_spend_survives_a_restart(tenancy: Tenancy) -> None:
    """Spend goes to SQL through the real trace writer; a new process's Limits starts from it."""
    p = tenancy.key("persisted", budget=1.0)
    before = limits_for(tenancy.store, Clock(datetime.now(UTC)))
    writer = TraceWriter(tenancy.store, on_batch=record_spend)
    for cost in (0.3, 0.4):
        admission = await before.admit(p)
        record = CallRecord(principal=p, model="m", input_tokens=1000, output_tokens=100, cost=cost)
        await before.settle(p, 1000, 100, cost, admission)
        writer.record(record.row())
    await writer.flush()
    assert tenancy.spend()[(f"key:{p.key_id}", "total")] == (pytest.approx(0.7), 2000, 200, 2)

    after = limits_for(tenancy.store, Clock(datetime.now(UTC)))  # fresh counters: a restart
    await after.admit(p)
    await after.settle(p, 1000, 100, 0.3)
    with pytest.raises(BudgetExceeded) as caught:
        await after.admit(p)
    assert caught.value.spent == pytest.approx(1.0)
    # Without the store, the restarted process would have forgotten what was spent.
    await limits_for(None, Clock(datetime.now(UTC))).admit(p)


async def test_spend_of_another_period_does_not_count(tenancy: Tenancy) -> None:
    p = tenancy.key("monthly", budget=1.0)
    with tenancy.store.write() as session:
        record_spend(session, [_span(p, 5.0, at=datetime(2026, 10, 31, 23, 0, tzinfo=UTC))])
    await limits_for(tenancy.store).admit(p)
    with pytest.raises(BudgetExceeded):
        await limits_for(tenancy.store, Clock(datetime(2026, 10, 31, 23, 30, tzinfo=UTC))).admit(p)


@pytest.mark.redis
async def test_replicas_share_spend_seeded_once_from_sql(tenancy: Tenancy) -> None:
    p = tenancy.key("shared", budget=1.0, rpm=3)
    with tenancy.store.write() as session:
        record_spend(session, [_span(p, 0.5)])
    prefix = unique_prefix()
    async with redis_counters(prefix) as one, redis_counters(prefix) as two:
        first = Limits(one, tenancy.store, clock=Clock())
        second = Limits(two, tenancy.store, clock=Clock())
        await first.admit(p)
        await first.settle(p, 10, 10, 0.2)
        # The second replica finds the counter seeded by the first and does not reset it from SQL.
        await second.admit(p)
        await second.settle(p, 10, 10, 0.2)
        assert await one.get_floats([f"spend:key:{p.key_id}:2026-11"]) == [pytest.approx(0.9)]
        await first.settle(p, 10, 10, 0.1)
        with pytest.raises(BudgetExceeded):
            await second.admit(p)
        # Rate limits are shared too: two admits were counted, one more is allowed in all.
        p_no_budget = replace(p, key_budget=None)
        await first.admit(p_no_budget)
        with pytest.raises(RateLimited):
            await second.admit(p_no_budget)


def test_periods() -> None:
    at = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert [period_label(p, at) for p in ("day", "month", "total")] == ["2026-12-31", "2026-12", "total"]
    assert period_end("day", at) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("month", at) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("month", datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert period_end("total", at) is None
    assert period_start("day", at) == datetime(2026, 12, 31, tzinfo=UTC)
    assert period_start("month", at) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_start("total", at) is None
    # Labels are in UTC whatever the zone of the time given.
    local = datetime(2026, 12, 1, 0, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    assert period_label("day", local) == "2026-12-01"
    with pytest.raises(ValueError):
        period_label("week", at)
