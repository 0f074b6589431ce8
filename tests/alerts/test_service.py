"""Alert rules on both backends: create, read, change, delete, and the mistakes each refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fmops.alerts import AlertRuleCreate, AlertRuleUpdate, AlertService
from fmops.alerts.urls import check_webhook_url
from fmops.errors import Conflict, NotFound, UserError
from fmops.settings import load_settings
from fmops.store import Store
from fmops.store.models import AlertEvent

PROJECT = "p" * 32
OTHER = "o" * 32
KEY = "k" * 32


def service(store: Store, tmp_path: Path, *, allow_private: bool = False) -> AlertService:
    settings = load_settings(
        {"home": tmp_path, "database_url": store.url, "upstream_allow_private": allow_private}
    )
    return AlertService(store, settings)


def body(**fields: Any) -> AlertRuleCreate:
    base: dict[str, Any] = {"name": "slow", "metric": "latency_p95_ms", "operator": ">", "threshold": 800}
    return AlertRuleCreate.model_validate(base | fields)


def test_create_read_update_delete(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(PROJECT, body(filters={"model": "gpt"}), key_id=KEY)
    assert (rule.state, rule.enabled, rule.window_seconds, rule.min_count) == ("ok", True, 300, 1)
    assert rule.filters == {"model": "gpt"}, "only the filters given are stored"
    alerts.create(PROJECT, body(name="errors", metric="error_rate", threshold=0.05), key_id=KEY)
    assert [r.name for r in alerts.rules(PROJECT)] == ["errors", "slow"]
    assert alerts.rules(OTHER) == []
    assert len(alerts.rules(None)) == 2  # the operator sees every project

    changed = alerts.update(PROJECT, rule.id, AlertRuleUpdate(threshold=900, window_seconds=600), key_id=KEY)
    assert (changed.threshold, changed.window_seconds, changed.metric) == (900, 600, "latency_p95_ms")
    assert alerts.get(PROJECT, rule.id).threshold == 900

    with store.session() as session:
        session.add(AlertEvent(rule_id=rule.id, project_id=PROJECT, state="firing", value=1.0, threshold=900))
    alerts.delete(PROJECT, rule.id)
    with pytest.raises(NotFound):
        alerts.get(PROJECT, rule.id)
    assert alerts.events(PROJECT) == [], "a rule's events go with it"


def test_rules_of_another_project_are_invisible(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(OTHER, body(), key_id=KEY)
    for attempt in (
        lambda: alerts.get(PROJECT, rule.id),
        lambda: alerts.update(PROJECT, rule.id, AlertRuleUpdate(threshold=1), key_id=KEY),
        lambda: alerts.delete(PROJECT, rule.id),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert alerts.get(OTHER, rule.id).threshold == 800


def test_names_are_unique_per_project(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    first = alerts.create(PROJECT, body(), key_id=KEY)
    with pytest.raises(Conflict, match="already exists"):
        alerts.create(PROJECT, body(), key_id=KEY)
    alerts.create(OTHER, body(), key_id=KEY)  # another project may use the name
    second = alerts.create(PROJECT, body(name="other"), key_id=KEY)
    with pytest.raises(Conflict):
        alerts.update(PROJECT, second.id, AlertRuleUpdate(name="slow"), key_id=KEY)
    assert alerts.update(PROJECT, first.id, AlertRuleUpdate(name="slow"), key_id=KEY).name == "slow"


INCONSISTENT = [
    ({"metric": "score_mean"}, "filters", "name it in filters"),
    ({"filters": {"score": "judge"}}, "filters", "only used by the score_mean"),
    ({"metric": "error_rate", "threshold": 5}, "threshold", "between 0 and 1"),
    ({"metric": "feedback_positive_share", "threshold": -0.1}, "threshold", "between 0 and 1"),
]


def test_inconsistent_rules_are_refused(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(PROJECT, body(), key_id=KEY)
    for fields, param, words in INCONSISTENT:
        with pytest.raises(UserError, match=words) as caught:
            alerts.create(PROJECT, body(name="new", **fields), key_id=KEY)
        assert caught.value.param == param
        with pytest.raises(UserError, match=words):
            alerts.update(PROJECT, rule.id, AlertRuleUpdate.model_validate(fields), key_id=KEY)
    assert [r.name for r in alerts.rules(PROJECT)] == ["slow"]
    assert alerts.get(PROJECT, rule.id).metric == "latency_p95_ms", "a refused change changes nothing"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metric": "p95"}, "metric"),
        ({"operator": "=="}, "operator"),
        ({"threshold": "800"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"window_seconds": 10}, "window_seconds"),
        ({"window_seconds": 30 * 86_400}, "window_seconds"),
        ({"min_count": -1}, "min_count"),
        ({"filters": {"modle": "gpt"}}, "filters"),
        ({"name": ""}, "name"),
        ({"name": "bad/name"}, "name"),
        ({"enabled": "yes"}, "enabled"),
        ({"severity": "high"}, "severity"),
    ],
)
def test_malformed_rules_fail_validation(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        body(**fields)
    assert caught.value.errors()[0]["loc"][0] == field


def test_an_update_cannot_null_a_required_field(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(PROJECT, body(), key_id=KEY)
    with pytest.raises(UserError, match="threshold cannot be null") as caught:
        alerts.update(PROJECT, rule.id, AlertRuleUpdate.model_validate({"threshold": None}), key_id=KEY)
    assert caught.value.param == "threshold"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:9/hook", "loopback or private"),
        ("http://10.1.2.3/hook", "loopback or private"),
        ("http://[::1]/hook", "loopback or private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("ftp://example.com/hook", "http:// or https://"),
        ("http://user:secret@example.com/hook", "credentials"),
        ("http:///hook", "no host"),
    ],
)
def test_webhooks_are_checked_against_ssrf(url: str, words: str) -> None:
    with pytest.raises(UserError, match=words) as caught:
        check_webhook_url(url, allow_private=False)
    assert caught.value.param == "webhook_url"
    assert "webhook_url" in caught.value.message
    assert "base_url" not in caught.value.message


def test_saving_a_rule_checks_its_webhook(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    with pytest.raises(UserError, match="loopback or private") as caught:
        alerts.create(PROJECT, body(webhook_url="http://127.0.0.1:9/hook"), key_id=KEY)
    assert caught.value.param == "webhook_url"
    assert "FMOPS_UPSTREAM_ALLOW_PRIVATE=true" in caught.value.message, "it says how to allow it"
    rule = alerts.create(PROJECT, body(name="later"), key_id=KEY)
    with pytest.raises(UserError, match="link-local"):
        alerts.update(PROJECT, rule.id, AlertRuleUpdate(webhook_url="http://169.254.169.254/"), key_id=KEY)
    assert alerts.get(PROJECT, rule.id).webhook_url is None


def test_private_webhooks_when_allowed_or_chosen_by_the_operator(store: Store, tmp_path: Path) -> None:
    strict = service(store, tmp_path)
    local = "http://127.0.0.1:9/hook"
    by_operator = strict.create(PROJECT, body(name="ops", webhook_url=local), key_id=None)
    assert by_operator.webhook_url == local
    assert by_operator.created_by_key_id is None
    # A key re-pointing it is held to the rule for keys; removing the webhook is always fine.
    with pytest.raises(UserError, match="loopback or private"):
        strict.update(PROJECT, by_operator.id, AlertRuleUpdate(webhook_url="http://10.0.0.1/"), key_id=KEY)
    removed = strict.update(
        PROJECT, by_operator.id, AlertRuleUpdate.model_validate({"webhook_url": None}), key_id=KEY
    )
    assert removed.webhook_url is None
    lenient = service(store, tmp_path, allow_private=True)
    assert lenient.create(PROJECT, body(name="dev", webhook_url=local), key_id=KEY).webhook_url == local
    # Metadata addresses stay refused whoever asks.
    with pytest.raises(UserError, match="link-local"):
        lenient.create(PROJECT, body(name="meta", webhook_url="http://169.254.169.254/"), key_id=None)


def test_disabling_a_firing_rule_mutes_it(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(PROJECT, body(), key_id=KEY)
    with store.session() as session:
        session.get_one(type(rule), rule.id).state = "firing"
    muted = alerts.update(PROJECT, rule.id, AlertRuleUpdate(enabled=False), key_id=KEY)
    assert (muted.enabled, muted.state) == (False, "ok")
    assert alerts.enabled() == []


def test_events_are_paged_newest_first(store: Store, tmp_path: Path) -> None:
    alerts = service(store, tmp_path)
    rule = alerts.create(PROJECT, body(), key_id=KEY)
    other = alerts.create(PROJECT, body(name="other"), key_id=KEY)
    with store.session() as session:
        for n in range(5):
            session.add(AlertEvent(rule_id=rule.id, project_id=PROJECT, state="firing", value=n, threshold=1))
        session.add(AlertEvent(rule_id=other.id, project_id=PROJECT, state="firing", value=9, threshold=1))
        session.add(AlertEvent(rule_id="x" * 32, project_id=OTHER, state="firing", value=9, threshold=1))
    first = alerts.events(PROJECT, rule_id=rule.id, limit=3)
    rest = alerts.events(PROJECT, rule_id=rule.id, limit=3, before=first[-1].id)
    assert [e.value for e in first + rest] == [4, 3, 2, 1, 0]
    assert len(alerts.events(PROJECT)) == 6
    with pytest.raises(UserError, match="limit"):
        alerts.events(PROJECT, limit=0)
