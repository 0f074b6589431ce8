"""Evaluating rules on both backends: fire once to a real webhook, stay silent, resolve; one winner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fmops.alerts import AlertRuleCreate, AlertService
from fmops.alerts import webhook as webhook_module
from fmops.alerts.evaluate import AlertEvaluator, Evaluation
from fmops.alerts.loop import AlertLoop
from fmops.settings import Settings, load_settings
from fmops.store import Store, utcnow
from fmops.store.models import AlertEvent, AlertRule
from support.stats_data import insert_rows, score, span
from support.webhook_receiver import Receiver, webhook_receiver

PROJECT = "p" * 32


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_module, "BACKOFF_SECONDS", 0.01)


@pytest.fixture
def settings(store: Store, tmp_path: Path) -> Settings:
    return load_settings({"home": tmp_path, "database_url": store.url, "upstream_allow_private": True})


@pytest.fixture
def alerts(store: Store, settings: Settings) -> AlertService:
    return AlertService(store, settings)


@pytest.fixture
def evaluator(store: Store, alerts: AlertService) -> AlertEvaluator:
    return AlertEvaluator(store, alerts)


def rule(alerts: AlertService, receiver: Receiver | None = None, **fields: Any) -> AlertRule:
    body: dict[str, Any] = {"name": "slow", "metric": "latency_p95_ms", "operator": ">", "threshold": 500}
    body |= {"window_seconds": 300, "webhook_url": receiver.url if receiver else None} | fields
    return alerts.create(PROJECT, AlertRuleCreate.model_validate(body), key_id="k" * 32)


def requests(
    store: Store, latencies: list[float], ago: timedelta = timedelta(seconds=30), **columns: Any
) -> list[dict[str, Any]]:
    rows = [span(PROJECT, utcnow() - ago, latency_ms=v, **columns) for v in latencies]
    insert_rows(store, rows)
    return rows


def events(store: Store) -> list[AlertEvent]:
    with store.session() as session:
        return list(session.query(AlertEvent).order_by(AlertEvent.created_at, AlertEvent.id))


@pytest.mark.anyio
async def test_fires_once_stays_silent_then_resolves(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator, receiver: Receiver
) -> None:
    slow = rule(alerts, receiver)
    quiet = await evaluator.evaluate(slow)
    assert (quiet.value, quiet.breached, quiet.event) == (None, None, None), "no traffic: no verdict"

    requests(store, [900.0, 1200.0, 800.0])
    fired = await evaluator.evaluate(alerts.get(PROJECT, slow.id))
    assert fired.breached is True
    assert fired.event is not None
    assert fired.rule.state == "firing"
    assert fired.rule.last_value == pytest.approx(fired.value)
    [posted] = receiver.wait_for(1)
    assert (posted["state"], posted["rule"]["id"], posted["event_id"]) == ("firing", slow.id, fired.event.id)
    assert posted["value"] == pytest.approx(fired.value)
    assert posted["value"] > 500
    assert "slow is firing" in posted["text"]

    for _ in range(3):  # still above the threshold: no repeat
        again = await evaluator.evaluate(alerts.get(PROJECT, slow.id))
        assert again.breached is True
        assert again.event is None
    assert len(receiver.received) == 1

    requests(store, [100.0] * 97)  # p95 of 100 requests is now one of the fast ones
    resolved = await evaluator.evaluate(alerts.get(PROJECT, slow.id))
    assert resolved.breached is False
    assert resolved.event is not None
    assert resolved.rule.state == "ok"
    assert receiver.wait_for(2)[1]["state"] == "resolved"
    recorded = events(store)
    assert [(e.state, e.delivered, e.delivery_error) for e in recorded] == [
        ("firing", True, None),
        ("resolved", True, None),
    ]
    assert (await evaluator.evaluate(alerts.get(PROJECT, slow.id))).event is None
    assert len(receiver.received) == 2


def race(evaluators: list[AlertEvaluator], seen: AlertRule) -> list[Evaluation]:
    """Every evaluator decides on the rule as it was read, all at the same moment."""
    start = threading.Barrier(len(evaluators))
    outcomes: list[Evaluation | None] = [None] * len(evaluators)

    def decide(i: int) -> None:
        start.wait()
        outcomes[i] = evaluators[i].decide(seen)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(len(evaluators))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return [o for o in outcomes if o is not None]


def test_concurrent_evaluations_make_one_event(store: Store, settings: Settings) -> None:
    """Replicas (each its own engine) evaluating the same crossing at once: one fires, the others do not."""
    alerts = AlertService(store, settings)
    created = rule(alerts)
    replicas = [Store(store.url) for _ in range(6)]
    evaluators = [AlertEvaluator(s, AlertService(s, settings)) for s in replicas]
    try:
        requests(store, [900.0])
        fired = race(evaluators, created)
        assert len(fired) == len(evaluators)
        assert sum(o.event is not None for o in fired) == 1
        requests(store, [10.0] * 99)
        resolved = race(evaluators, alerts.get(None, created.id))
        assert sum(o.event is not None for o in resolved) == 1
    finally:
        for replica in replicas:
            replica.dispose()
    assert [e.state for e in events(store)] == ["firing", "resolved"]


def test_too_few_samples_give_no_verdict(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator
) -> None:
    created = rule(alerts, min_count=5)
    requests(store, [900.0] * 4)
    outcome = evaluator.decide(created)
    assert (outcome.breached, outcome.count, outcome.event) == (None, 4, None)
    assert outcome.value == pytest.approx(900.0), "the value is still recorded"
    requests(store, [900.0])
    assert evaluator.decide(created).event is not None


def test_spans_outside_the_window_or_filters_do_not_count(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator
) -> None:
    created = rule(alerts, filters={"model": "gpt"}, window_seconds=60)
    requests(store, [900.0], ago=timedelta(minutes=5), model="gpt")  # too old
    requests(store, [900.0], model="claude")  # another model
    requests(store, [100.0], model="gpt")
    outcome = evaluator.decide(created)
    assert (outcome.value, outcome.count, outcome.breached) == (100.0, 1, False)


def test_each_metric_reads_its_number(store: Store, alerts: AlertService, evaluator: AlertEvaluator) -> None:
    rows = requests(store, [100.0, 200.0, 300.0, 400.0], cost=0.5)
    rows += requests(store, [500.0], status="error", cost=0.5)
    insert_rows(
        store,
        [],
        [
            score(rows[0], "thumbs", 1, source="human"),
            score(rows[1], "thumbs", -1, source="human"),
            score(rows[2], "thumbs", 1, source="api"),
            score(rows[0], "number", 0.2, source="evaluator", name="judge"),
            score(rows[1], "number", 0.6, source="evaluator", name="judge"),
        ],
    )
    expected = {
        "volume": 5,
        "errors": 1,
        "error_rate": 0.2,
        "latency_p50_ms": 300.0,
        "cost": 2.5,
        "cost_per_hour": 2.5 * 3600 / 600,  # 2.5 spent in a 10-minute window
        "feedback_rate": 3 / 5,
        "feedback_positive_share": 2 / 3,
        "score_mean": 0.4,
    }
    for n, (metric, value) in enumerate(expected.items()):
        fields: dict[str, Any] = {"name": f"r{n}", "metric": metric, "threshold": 0.5, "window_seconds": 600}
        if metric == "score_mean":
            fields["filters"] = {"score": "judge"}
        outcome = evaluator.decide(rule(alerts, **fields))
        assert outcome.value == pytest.approx(value), metric


@pytest.mark.anyio
async def test_failed_deliveries_are_retried_and_recorded(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator, receiver: Receiver
) -> None:
    requests(store, [900.0])
    receiver.statuses = [500, 503]  # two failures, then accepted
    flaky = await evaluator.evaluate(rule(alerts, receiver, name="flaky"))
    assert flaky.event is not None
    assert len(receiver.wait_for(3)) == 3
    assert [(e.delivered, e.delivery_error) for e in events(store)] == [(True, None)]

    receiver.statuses = [500] * 3
    down = await evaluator.evaluate(rule(alerts, receiver, name="down"))
    assert down.event is not None
    assert down.event.delivered is False
    assert down.event.delivery_error == "the webhook answered HTTP 500 (after 3 attempts)"

    receiver.statuses = [404]  # the receiver refuses it: sending again will not help
    before = len(receiver.received)
    gone = await evaluator.evaluate(rule(alerts, receiver, name="gone"))
    assert gone.event is not None
    assert gone.event.delivery_error == "the webhook answered HTTP 404 (after 1 attempt)"
    assert len(receiver.received) == before + 1
    stored = {e.id: e for e in events(store)}
    assert stored[gone.event.id].delivery_error == gone.event.delivery_error, "the outcome is saved"


@pytest.mark.anyio
async def test_a_webhook_that_became_private_is_not_posted(
    store: Store, settings: Settings, receiver: Receiver
) -> None:
    """Checked at delivery too: a rule saved while private addresses were allowed, delivered after not."""
    created = rule(AlertService(store, settings), receiver)
    strict = settings.model_copy(update={"upstream_allow_private": False})
    requests(store, [900.0])
    outcome = await AlertEvaluator(store, AlertService(store, strict)).evaluate(created)
    assert outcome.event is not None
    assert outcome.event.delivered is False
    assert "loopback or private" in (outcome.event.delivery_error or "")
    assert receiver.received == []


@pytest.mark.anyio
async def test_the_loop_evaluates_every_enabled_rule(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator, receiver: Receiver
) -> None:
    rule(alerts, receiver, name="on")
    rule(alerts, receiver, name="off", enabled=False)
    requests(store, [900.0])
    loop = AlertLoop(evaluator, interval_seconds=0.05)
    await loop.start()
    try:
        [posted] = await anyio_wait(receiver, 1)
    finally:
        await loop.close()
    assert posted["rule"]["name"] == "on"
    assert [e.state for e in events(store)] == ["firing"]


async def anyio_wait(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    import anyio

    with anyio.fail_after(10):
        while len(receiver.received) < count:
            await anyio.sleep(0.02)
    await anyio.sleep(0.3)  # a few more rounds: nothing else may arrive
    return list(receiver.received)


def test_a_disabled_rule_reads_its_value_but_never_fires(
    store: Store, alerts: AlertService, evaluator: AlertEvaluator
) -> None:
    muted = rule(alerts, enabled=False)
    requests(store, [900.0])
    outcome = evaluator.decide(muted)
    assert (outcome.value, outcome.breached, outcome.event) == (900.0, True, None)
    assert outcome.rule.state == "ok"
    assert events(store) == []
