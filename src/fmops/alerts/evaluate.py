"""Evaluating a rule: read its metric over the window, and move it between ok and firing exactly once.

Every replica evaluates every rule. A transition is a conditional UPDATE (`... WHERE state = <the
state this evaluation read>`) in the same transaction as the event it records: of the evaluations
that see the same crossing, one updates a row and writes the event; the others update nothing and
stay silent. Only that winner posts the webhook, after the commit; the delivery's outcome is saved
on the event.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update

from fmops.alerts.rules import OPERATORS, AlertMetric, Reading, read
from fmops.alerts.schemas import RuleFilters
from fmops.alerts.service import AlertService, webhook_trusted
from fmops.stats import StatsFilters, StatsService
from fmops.stats.guardrails import blocked_calls
from fmops.store import Store, utcnow
from fmops.store.models import AlertEvent, AlertRule

log = logging.getLogger(__name__)
OK, FIRING, RESOLVED = "ok", "firing", "resolved"
CONCURRENCY = 4  # rules evaluated at once: a slow webhook must not hold up every other rule


@dataclass
class Evaluation:
    rule: AlertRule  # as it is after this evaluation
    value: float | None
    count: int
    breached: bool | None  # None: no verdict (too few samples, or no value)
    event: AlertEvent | None  # the event this evaluation fired or resolved, if it won the transition


def verdict(rule: AlertRule, reading: Reading) -> bool | None:
    if reading.value is None or reading.count < rule.min_count:
        return None
    return OPERATORS[rule.operator](reading.value, rule.threshold)


def payload(rule: AlertRule, event: AlertEvent) -> dict[str, Any]:
    """What the webhook receives; `text` reads well in chat tools that show it as is."""
    value = "no value" if event.value is None else f"{event.value:g}"
    condition = f"{rule.metric} {rule.operator} {rule.threshold:g}"
    text = (
        f"[fmops] {rule.name} is {event.state}: {condition}"
        f" (now {value}, over the last {rule.window_seconds} s)"
    )
    return {
        "event_id": event.id,
        "state": event.state,
        "value": event.value,
        "threshold": event.threshold,
        "at": event.created_at.isoformat(),
        "project_id": rule.project_id,
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "metric": rule.metric,
            "operator": rule.operator,
            "threshold": rule.threshold,
            "window_seconds": rule.window_seconds,
            "filters": rule.filters,
        },
        "text": text,
    }


class AlertEvaluator:
    def __init__(self, store: Store, alerts: AlertService) -> None:
        self.store = store
        self.alerts = alerts
        self.stats = StatsService(store)

    def measure(self, rule: AlertRule, now: datetime) -> Reading:
        filters = RuleFilters.model_validate(rule.filters)
        window = StatsFilters(
            start=now - timedelta(seconds=rule.window_seconds), end=now, **filters.dimensions()
        )
        metrics = self.stats.totals(rule.project_id, window)
        metric = AlertMetric(rule.metric)
        blocked = 0
        if metric == AlertMetric.guardrail_block_rate:
            blocked = blocked_calls(self.store, rule.project_id, window, filters.policy)
        return read(metric, metrics, window_seconds=rule.window_seconds, score=filters.score, blocked=blocked)

    def decide(self, rule: AlertRule, now: datetime | None = None) -> Evaluation:
        """Measure the rule and record the outcome; fire or resolve if this evaluation wins the change."""
        now = now or utcnow()
        reading = self.measure(rule, now)
        breached = verdict(rule, reading)
        wanted = rule.state if breached is None or not rule.enabled else (FIRING if breached else OK)
        values = {"last_value": reading.value, "last_evaluated_at": now}
        event: AlertEvent | None = None
        if wanted == rule.state:
            with self.store.session() as session:
                session.execute(update(AlertRule).where(AlertRule.id == rule.id).values(**values))
        else:
            with self.store.write() as session:
                moved = cast(
                    CursorResult[Any],
                    session.execute(
                        update(AlertRule)
                        .where(
                            AlertRule.id == rule.id,
                            AlertRule.state == rule.state,
                            AlertRule.enabled.is_(True),
                        )
                        .values(state=wanted, **values)
                    ),
                )
                if moved.rowcount == 1:
                    event = AlertEvent(
                        rule_id=rule.id,
                        project_id=rule.project_id,
                        state=FIRING if wanted == FIRING else RESOLVED,
                        value=reading.value,
                        threshold=rule.threshold,
                        created_at=now,
                    )
                    session.add(event)
        return Evaluation(
            rule=self.alerts.get(None, rule.id),
            value=reading.value,
            count=reading.count,
            breached=breached,
            event=event,
        )

    async def deliver(self, rule: AlertRule, event: AlertEvent) -> AlertEvent:
        """POST the event to the rule's webhook (if any) and record how that went."""
        if rule.webhook_url is None:
            return event
        # Imported here: the HTTP client loads only in the process that posts (the server), not
        # in every CLI command that builds a platform.
        from fmops.alerts.webhook import post_json

        allow_private = webhook_trusted(rule) or self.alerts.settings.upstream_allow_private
        error = await post_json(rule.webhook_url, payload(rule, event), allow_private=allow_private)
        event.delivered, event.delivery_error = error is None, error
        await asyncio.to_thread(self._save_delivery, event)
        return event

    def _save_delivery(self, event: AlertEvent) -> None:
        with self.store.session() as session:
            session.execute(
                update(AlertEvent)
                .where(AlertEvent.id == event.id)
                .values(delivered=event.delivered, delivery_error=event.delivery_error)
            )

    async def evaluate(self, rule: AlertRule) -> Evaluation:
        result = await asyncio.to_thread(self.decide, rule)
        if result.event is not None:
            await self.deliver(result.rule, result.event)
        return result

    async def evaluate_all(self) -> int:
        """Evaluate every enabled rule once; returns how many events were fired or resolved."""
        rules = await asyncio.to_thread(self.alerts.enabled)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(rule: AlertRule) -> bool:
            async with slots:
                try:
                    return (await self.evaluate(rule)).event is not None
                except Exception:  # one broken rule must not stop the others
                    log.exception("alert rule evaluation failed", extra={"rule": rule.id})
                    return False

        return sum(await asyncio.gather(*(one(r) for r in rules)))
