"""`fmops alerts`, the real console script's `main()`: create, list, events, delete, and the mistakes it
refuses. The commands of each step run in one process (`run_session`): starting the CLI costs seconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fmops.alerts import AlertService
from fmops.alerts.evaluate import AlertEvaluator
from fmops.settings import load_settings
from fmops.store import Store, utcnow
from support.cli_runs import prepared, run_session, session_env
from support.databases import sqlite_url
from support.stats_data import insert_rows, span

CREATE = ("alerts", "create", "slow", "--metric", "latency_p95_ms", "--op", "gt", "--threshold", "500")


def test_alert_rules_from_the_terminal(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    project = prepared(tmp_path, url)
    # The local operator may point a webhook at a private address, as with `fmops models add`.
    webhook = "http://127.0.0.1:9/hook"
    env = session_env(tmp_path, columns=80) | {"FMOPS_DATABASE_URL": url}
    created, no_score, bad_op = run_session(
        env,
        [
            (*CREATE, "--window", "120", "--model", "gpt", "--webhook", webhook),
            ("alerts", "create", "judge", "--metric", "score_mean", "--op", "lt", "--threshold", "3"),
            ("alerts", "create", "x", "--metric", "error_rate", "--op", "eq", "--threshold", "0.1"),
        ],
        cwd=tmp_path,
    )
    assert created.code == 0, str(created)
    assert "created alert rule slow" in created.stdout
    assert "latency_p95_ms > 500 over 120 s" in created.stdout
    assert no_score.code == 1, str(no_score)
    assert 'name it in filters, e.g. {"score": "judge"}' in no_score.stderr
    assert bad_op.code == 2, str(bad_op)
    assert "use gt, ge, lt or le" in bad_op.stderr

    # The server would evaluate it; here the evaluator runs in this process, on the same database.
    store = Store(url)
    try:
        alerts = AlertService(store, load_settings({"home": tmp_path, "database_url": url}))
        insert_rows(store, [span(project, utcnow(), model="gpt", latency_ms=900.0)])
        fired = asyncio.run(AlertEvaluator(store, alerts).evaluate(alerts.rules(project)[0]))
        assert fired.event is not None
    finally:
        store.dispose()

    listed, events, again, deleted = run_session(
        env,
        [("alerts", "list", "--json"), ("alerts", "events", "--json"), CREATE, ("alerts", "delete", "slow")],
        cwd=tmp_path,
    )
    [rule] = json.loads(listed.stdout)
    assert (rule["name"], rule["condition"], rule["state"], rule["webhook"]) == (
        "slow",
        "latency_p95_ms > 500",
        "firing",
        webhook,
    )
    [event] = json.loads(events.stdout)
    assert (event["rule"], event["state"], event["value"]) == ("slow", "firing", 900.0)
    assert event["delivered"].startswith("could not reach the webhook"), event
    assert again.code == 1
    assert "already exists" in again.stderr
    assert deleted.code == 0, str(deleted)
    assert "deleted alert rule slow" in deleted.stdout
    store = Store(url)
    try:
        assert AlertService(store, load_settings({"home": tmp_path, "database_url": url})).rules(None) == []
    finally:
        store.dispose()
