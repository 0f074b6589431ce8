"""The alerts page on a real server: rules made, muted and deleted in a browser, as the API then sees them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.server import RunningServer, start_server

XSS = """<img src=x onerror=alert(1)><script>alert(2)</script>"'><svg onload=alert(3)>"""


@dataclass
class World:
    server: RunningServer
    engineer: str
    consumer: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with start_server(tmp_path_factory.mktemp("alerts-web"), {"FMOPS_WORKERS": "0"}) as server:
        yield World(
            server, create_user_key(server, "ada", "engineer"), create_user_key(server, "cy", "consumer")
        )


def rules(world: World) -> list[dict[str, Any]]:
    with world.server.client(world.engineer) as api:
        response = api.get("/api/alerts")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found


def open_alerts(page: Page, world: World) -> None:
    sign_in(page, world.server, world.engineer)
    page.goto(f"{world.server.url}/console/alerts")
    expect(page.locator("h1")).to_have_text("Alerts")


def fill_rule(page: Page, **fields: str) -> None:
    form = page.locator("[data-testid=alert-form]")
    for name, value in fields.items():
        if name in ("metric", "operator", "window_seconds"):
            form.locator(f"select[name={name}]").select_option(value)
        else:
            form.locator(f"[name={name}]").fill(value)
    form.locator("button[type=submit]").click()


def test_create_disable_and_delete_a_rule(world: World, page: Page, tmp_path: Path) -> None:
    dialogs = watch_dialogs(page)
    open_alerts(page, world)
    expect(page.locator("[data-testid=no-rules]")).to_be_visible()
    fill_rule(
        page,
        name="p95 too slow",
        metric="latency_p95_ms",
        operator=">",
        threshold="800",
        window_seconds="900",
        filter_model="gpt-4o",
    )
    expect(page.locator("#flash")).to_contain_text("Created the rule p95 too slow")
    row = page.locator("tr", has=page.locator("td.rule-name", has_text="p95 too slow"))
    expect(row.locator(".condition")).to_have_text("latency_p95_ms > 800 over 15 min")
    expect(row).to_contain_text("model: gpt-4o")
    expect(row).to_contain_text("ok")
    expect(page.locator("[data-testid=alert-form] input[name=name]")).to_have_value("")
    screenshot(page, "console-alerts", tmp_path)
    [made] = rules(world)
    assert (made["name"], made["metric"], made["threshold"], made["window_seconds"]) == (
        "p95 too slow",
        "latency_p95_ms",
        800,
        900,
    )
    assert (made["filters"], made["enabled"]) == ({"model": "gpt-4o"}, True)

    row.get_by_role("button", name="Disable").click()
    expect(page.locator("#flash")).to_contain_text("is disabled")
    expect(row).to_contain_text("disabled")
    assert rules(world)[0]["enabled"] is False
    row.get_by_role("button", name="Enable").click()
    expect(row.get_by_role("button", name="Disable")).to_be_visible()
    assert rules(world)[0]["enabled"] is True

    row.get_by_role("button", name="Delete").click()
    expect(page.locator("[data-testid=no-rules]")).to_be_visible()
    assert dialogs == ["confirm: Delete the rule p95 too slow and its events?"]
    assert rules(world) == []


def test_bad_rules_are_explained_and_nothing_is_stored(world: World, page: Page) -> None:
    open_alerts(page, world)
    fill_rule(page, name="errors", metric="error_rate", threshold="5")
    expect(page.locator("#flash .flash.error")).to_contain_text("a fraction between 0 and 1")
    fill_rule(page, name="errors", metric="error_rate", threshold="lots")
    expect(page.locator("#flash .flash.error")).to_contain_text("threshold must be a number")
    fill_rule(page, name="judge low", metric="score_mean", operator="<", threshold="0.5")
    expect(page.locator("#flash .flash.error")).to_contain_text("score_mean watches one score")
    assert rules(world) == []
    # The form keeps what was typed, to be fixed rather than retyped.
    expect(page.locator("[data-testid=alert-form] input[name=name]")).to_have_value("judge low")
    page.locator("[data-testid=alert-form] input[name=filter_score]").fill("judge")
    page.locator("[data-testid=alert-form] button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("Created the rule judge low")
    assert [r["filters"] for r in rules(world)] == [{"score": "judge"}]
    with world.server.client(world.engineer) as api:
        assert api.delete(f"/api/alerts/{rules(world)[0]['id']}").status_code == 204


def test_hostile_text_is_shown_as_text(world: World, page: Page) -> None:
    dialogs = watch_dialogs(page)
    open_alerts(page, world)
    fill_rule(page, name=XSS, metric="volume", threshold="1")
    expect(page.locator("#flash .flash.error")).to_contain_text("name:")
    fill_rule(
        page, name="hostile filters", metric="volume", threshold="1", filter_model=XSS, filter_endpoint=XSS
    )
    expect(page.locator("#flash")).to_contain_text("Created the rule hostile filters")
    [rule] = rules(world)
    assert rule["filters"]["model"] == XSS
    # An event, so the events table shows the rule too: volume >= 0 with no traffic fires at once.
    with world.server.client(world.engineer) as api:
        changed = api.patch(
            f"/api/alerts/{rule['id']}", json={"operator": ">=", "threshold": 0, "min_count": 0}
        )
        assert changed.status_code == 200, changed.text
        fired = api.post(f"/api/alerts/{rule['id']}/evaluate")
        assert fired.status_code == 200, fired.text
        assert fired.json()["event"]["state"] == "firing"
    page.reload()
    row = page.locator("tr", has=page.locator("td.rule-name", has_text="hostile filters"))
    expect(row).to_contain_text(f"model: {XSS}")
    expect(row.locator(".badge.bad")).to_have_text("firing")
    expect(page.locator("#alert-events")).to_contain_text("hostile filters")
    expect(page.locator("#alert-events .badge.bad")).to_have_text("firing")
    assert page.locator("img[src=x], svg[onload], script:not([src])").count() == 0
    assert dialogs == []


def test_consumers_get_no_alerts_page(world: World) -> None:
    with httpx.Client(base_url=world.server.url, timeout=30) as client:
        assert client.post("/login", data={"api_key": world.consumer}).status_code == 303
        page = client.get("/console/alerts")
        assert page.status_code == 403
        assert "cannot open the console" in page.text
        refused = client.post("/console/alerts", data={"name": "x", "metric": "volume", "threshold": "1"})
        assert refused.status_code == 403
    assert "x" not in [r["name"] for r in rules(world)]
