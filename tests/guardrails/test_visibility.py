"""Guardrail decisions made visible, on both backends: the trace explorer's "blocked by" / "flagged
by" filters, the dashboards' blocks and flags per policy over time, and an alert rule on the share
of calls blocked. The spans are the engine's own rows (a call's and its decisions')."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fmops.alerts import AlertRuleCreate, AlertService
from fmops.alerts.evaluate import AlertEvaluator
from fmops.auth import Principal
from fmops.auth.roles import Role
from fmops.errors import UserError
from fmops.gateway.spans import CallRecord
from fmops.guardrails.engine import GuardrailBlocked, GuardrailRun
from fmops.guardrails.policy import Action
from fmops.settings import load_settings
from fmops.stats import StatsFilters
from fmops.stats.guardrails import blocked_calls, decision_series
from fmops.store import Store, utcnow
from fmops.tracing.query import ANY_POLICY, TraceFilters, TraceQuery
from support.guardrail_kit import policy, words
from support.stats_data import insert_rows

pytestmark = pytest.mark.anyio
PRINCIPAL = Principal("k" * 32, "u1", "ann", "p" * 32, "default", Role.admin)
DENY = policy(words("bomb"), "deny")
WATCH = policy(words("mock"), "watch", Action.flag)


async def call(text: str, model: str = "small") -> list[dict[str, Any]]:
    """One call's rows: the call's span and its decisions, as the gateway writes them."""
    record = CallRecord(principal=PRINCIPAL, model=model)
    run = GuardrailRun([DENY, WATCH], record)
    try:
        await run.check_input([{"role": "user", "content": text}])
    except GuardrailBlocked as exc:
        record.fail(exc.message)
    decisions = run.finish()
    return [record.row(), *decisions]


@pytest.fixture
async def traffic(store: Store) -> dict[str, list[dict[str, Any]]]:
    calls = {
        "blocked": await call("a bomb"),
        "flagged": await call("the mock"),
        "clean": await call("hello"),
        "other-model": await call("another bomb", model="big"),
    }
    insert_rows(store, [row for rows in calls.values() for row in rows])
    return calls


def _found(store: Store, **filters: Any) -> set[str]:
    page = TraceQuery(store).search(PRINCIPAL.project_id, TraceFilters(**filters))
    return {s.span_id for s in page.spans}


async def test_the_explorer_filters_on_blocked_by_and_flagged_by(
    store: Store, traffic: dict[str, list[dict[str, Any]]]
) -> None:
    ids = {name: rows[0]["span_id"] for name, rows in traffic.items()}
    assert _found(store, blocked_by="deny") == {ids["blocked"], ids["other-model"]}
    assert _found(store, blocked_by="deny", model="small") == {ids["blocked"]}
    assert _found(store, blocked_by=ANY_POLICY) == {ids["blocked"], ids["other-model"]}
    assert _found(store, flagged_by="watch") == {ids["flagged"]}
    assert _found(store, blocked_by="watch") == set()
    assert _found(store, flagged_by="deny") == set()
    decisions = _found(store, kind="guardrail")
    assert len(decisions) == 6  # both policies on two calls; a block ends the others' checks
    assert all(r["parent_span_id"] == rows[0]["span_id"] for rows in traffic.values() for r in rows[1:])


async def test_the_dashboards_count_blocks_and_flags_per_policy(
    store: Store, traffic: dict[str, list[dict[str, Any]]]
) -> None:
    now = utcnow()
    # Three half-hour buckets, the last starting half an hour ago: the spans, made moments before
    # `now`, fall in it even when a second boundary passed between them and `now`.
    last = int((now - timedelta(minutes=30)).timestamp())
    times = [last - 3600, last - 1800, last]
    found = decision_series(
        store, PRINCIPAL.project_id, now - timedelta(hours=2), now + timedelta(minutes=1), times
    )
    series = {s["label"]: s["values"] for s in found["series"]}
    assert series == {"deny blocked": [0, 0, 2], "watch flagged": [0, 0, 1]}
    assert found["other"] == 0


@pytest.fixture
def alerts(store: Store, tmp_path: Path) -> AlertService:
    return AlertService(store, load_settings({"home": tmp_path, "database_url": store.url}))


async def test_an_alert_fires_on_the_block_rate(
    store: Store, traffic: dict[str, list[dict[str, Any]]], alerts: AlertService
) -> None:
    window = StatsFilters(start=utcnow() - timedelta(minutes=5), end=utcnow() + timedelta(seconds=1))
    assert blocked_calls(store, PRINCIPAL.project_id, window) == 2
    assert blocked_calls(store, PRINCIPAL.project_id, window, "deny") == 2
    assert blocked_calls(store, PRINCIPAL.project_id, window, "watch") == 0
    evaluator = AlertEvaluator(store, alerts)

    def rule(name: str, threshold: float, **filters: str) -> Any:
        body = {
            "name": name,
            "metric": "guardrail_block_rate",
            "operator": ">",
            "threshold": threshold,
            "window_seconds": 300,
            "filters": filters,
        }
        return alerts.create(PRINCIPAL.project_id, AlertRuleCreate.model_validate(body), key_id=None)

    spike = evaluator.decide(rule("blocks", 0.25))
    assert (spike.value, spike.count, spike.breached) == (0.5, 4, True)  # 2 of 4 calls
    assert spike.event is not None
    assert spike.event.state == "firing"
    narrow = evaluator.decide(rule("small blocks", 0.25, model="small", policy="watch"))
    assert (narrow.value, narrow.breached) == (0.0, False)
    with pytest.raises(UserError, match=r"filters\.policy is only used by"):
        alerts.create(
            PRINCIPAL.project_id,
            AlertRuleCreate.model_validate(
                {
                    "name": "x",
                    "metric": "error_rate",
                    "operator": ">",
                    "threshold": 0.1,
                    "filters": {"policy": "deny"},
                }
            ),
            key_id=None,
        )
