"""Alert rules of a project: create, read, change, delete; and the history of their events.

`project_id=None` is the local operator (the CLI), who sees every project. A rule the operator
creates is trusted with a loopback or private webhook, as `fmops models add` is with upstreams;
one created or re-pointed through the API is held to FMOPS_UPSTREAM_ALLOW_PRIVATE, at save and at
every delivery (see `webhook_trusted`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from fmops.alerts.rules import AlertMetric
from fmops.alerts.schemas import AlertRuleCreate, AlertRuleUpdate, RuleFilters
from fmops.alerts.urls import check_webhook_url
from fmops.errors import Conflict, NotFound, UserError
from fmops.settings import Settings
from fmops.store import Store
from fmops.store.models import AlertEvent, AlertRule

MAX_EVENTS_PAGE = 500


def webhook_trusted(rule: AlertRule) -> bool:
    """Rules whose webhook the local operator chose (no key) may reach private addresses."""
    return rule.created_by_key_id is None


def check_rule(metric: AlertMetric, threshold: float, filters: RuleFilters) -> None:
    """What the schema alone cannot say: the metric and its filters and threshold agree."""
    if metric == AlertMetric.score_mean and filters.score is None:
        raise UserError(
            'score_mean watches one score: name it in filters, e.g. {"score": "judge"}', param="filters"
        )
    if metric != AlertMetric.score_mean and filters.score is not None:
        raise UserError("filters.score is only used by the score_mean metric", param="filters")
    if metric != AlertMetric.guardrail_block_rate and filters.policy is not None:
        raise UserError("filters.policy is only used by the guardrail_block_rate metric", param="filters")
    if metric.is_fraction and not 0 <= threshold <= 1:
        raise UserError(
            f"{metric.value} is a fraction between 0 and 1 (write 5% as 0.05), not {threshold:g}",
            param="threshold",
        )


class AlertService:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def _webhook(self, url: str | None, *, trusted: bool) -> str | None:
        if url is None:
            return None
        return check_webhook_url(url, allow_private=trusted or self.settings.upstream_allow_private)

    def create(self, project_id: str, body: AlertRuleCreate, *, key_id: str | None) -> AlertRule:
        """A new rule; `key_id=None` when the local operator creates it."""
        check_rule(body.metric, body.threshold, body.filters)
        webhook = self._webhook(body.webhook_url, trusted=key_id is None)
        rule = AlertRule(
            project_id=project_id,
            name=body.name,
            metric=body.metric.value,
            operator=body.operator,
            threshold=body.threshold,
            window_seconds=body.window_seconds,
            filters=body.filters.model_dump(exclude_none=True),
            min_count=body.min_count,
            webhook_url=webhook,
            enabled=body.enabled,
            state="ok",
            created_by_key_id=key_id,
        )
        with self.store.write() as session:
            self._name_free(session, project_id, body.name)
            session.add(rule)
        return rule

    def _name_free(self, session: Session, project_id: str, name: str, *, other_than: str = "") -> None:
        taken = session.scalar(
            select(AlertRule.id).where(
                AlertRule.project_id == project_id, AlertRule.name == name, AlertRule.id != other_than
            )
        )
        if taken:
            raise Conflict(f"an alert rule named {name!r} already exists in this project", param="name")

    def rules(self, project_id: str | None) -> list[AlertRule]:
        query = select(AlertRule).order_by(AlertRule.name, AlertRule.id)
        if project_id is not None:
            query = query.where(AlertRule.project_id == project_id)
        with self.store.session() as session:
            return list(session.scalars(query))

    def enabled(self) -> list[AlertRule]:
        """Every project's enabled rules, for the evaluation loop."""
        with self.store.session() as session:
            return list(session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True))))

    def _find(self, session: Session, project_id: str | None, ref: str) -> AlertRule:
        rule = session.get(AlertRule, ref) if len(ref) <= 32 else None
        if rule is None or (project_id is not None and rule.project_id != project_id):
            raise NotFound(f"no alert rule with id {ref!r}")
        return rule

    def get(self, project_id: str | None, rule_id: str) -> AlertRule:
        with self.store.session() as session:
            return self._find(session, project_id, rule_id)

    def find_by_name(self, project_id: str, name: str) -> AlertRule:
        with self.store.session() as session:
            rule = session.scalar(
                select(AlertRule).where(AlertRule.project_id == project_id, AlertRule.name == name)
            )
        if rule is None:
            raise NotFound(f"no alert rule named {name!r}; see `fmops alerts list`")
        return rule

    def update(
        self, project_id: str | None, rule_id: str, body: AlertRuleUpdate, *, key_id: str | None
    ) -> AlertRule:
        changes = body.changes()
        with self.store.write() as session:
            rule = self._find(session, project_id, rule_id)
            filters = RuleFilters.model_validate(changes.get("filters", rule.filters))
            metric = AlertMetric(changes.get("metric", rule.metric))
            check_rule(metric, changes.get("threshold", rule.threshold), filters)
            if "name" in changes:
                self._name_free(session, rule.project_id, changes["name"], other_than=rule.id)
            if "filters" in changes:
                changes["filters"] = filters.model_dump(exclude_none=True)
            if "webhook_url" in changes:
                changes["webhook_url"] = self._webhook(changes["webhook_url"], trusted=key_id is None)
                # Whoever chose the webhook last is who it is checked for at delivery.
                rule.created_by_key_id = key_id
            if changes.get("enabled") is False:
                rule.state = "ok"  # a muted rule is not firing; enabled again, it starts afresh
            for name, value in changes.items():
                setattr(rule, name, value.value if isinstance(value, AlertMetric) else value)
        return rule

    def delete(self, project_id: str | None, rule_id: str) -> None:
        """Delete the rule and its events."""
        with self.store.write() as session:
            rule = self._find(session, project_id, rule_id)
            session.execute(delete(AlertEvent).where(AlertEvent.rule_id == rule.id))
            session.delete(rule)

    def events(
        self,
        project_id: str | None,
        *,
        rule_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[AlertEvent]:
        """Newest first; `before` is the id of the last event of the previous page."""
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise UserError(f"limit must be between 1 and {MAX_EVENTS_PAGE}", param="limit")
        query = select(AlertEvent).order_by(AlertEvent.created_at.desc(), AlertEvent.id.desc()).limit(limit)
        conditions: list[Any] = []
        if project_id is not None:
            conditions.append(AlertEvent.project_id == project_id)
        if rule_id is not None:
            conditions.append(AlertEvent.rule_id == rule_id)
        with self.store.session() as session:
            if before is not None:
                last = session.get(AlertEvent, before) if len(before) <= 32 else None
                if last is None or (project_id is not None and last.project_id != project_id):
                    raise NotFound(f"no alert event with id {before!r}", param="before")
                # Keyset paging: ids of events made in the same millisecond do not sort by time.
                conditions.append(
                    or_(
                        AlertEvent.created_at < last.created_at,
                        and_(AlertEvent.created_at == last.created_at, AlertEvent.id < last.id),
                    )
                )
            return list(session.scalars(query.where(*conditions)))
