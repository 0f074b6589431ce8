"""Endpoints in a real browser against a real server: an engineer creates an endpoint from the form,
adds two variants and weighs them, calls split over them through the gateway, the page shows each
variant's results as the API reports them, and promoting the liked variant makes the endpoint serve
its prompt version and model."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.endpoint_specs import PROMPT, V2, VARIABLES
from support.gateway import gateway_server, read_span, sdk
from support.mock_upstream import MockUpstream
from support.server import RunningServer

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"


@dataclass
class World:
    server: RunningServer
    mock: MockUpstream
    engineer_key: str
    consumer_key: str


@pytest.fixture(scope="module")
def world(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("console-endpoints")
    with gateway_server(home, {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}) as server:
        with server.client() as admin:
            for alias in ("small", "other"):
                model = {"alias": alias, "provider": "openai", "model": f"up-{alias}", "base_url": mock.url}
                assert admin.post("/api/models", json=model | {"input_price": 1.0}).status_code == 201
            assert admin.post("/api/prompts", json=PROMPT).status_code == 201
            v2 = {**PROMPT, "messages": V2, "labels": []}
            assert admin.post("/api/prompts", json=v2).status_code == 201
        yield World(
            server,
            mock,
            create_user_key(server, "erin", "engineer"),
            create_user_key(server, "cody", "consumer"),
        )


def _call(world: World, user: str) -> tuple[str, str]:
    """One call to the endpoint `desk`: (trace id, the upstream model that answered)."""
    raw = sdk(world.server).chat.completions.with_raw_response.create(
        model="desk", messages=[], user=user, extra_body={"variables": VARIABLES}
    )
    return raw.headers["x-fmops-trace-id"], world.mock.state.requests[-1]["body"]["model"]


def test_an_engineer_runs_an_experiment_and_promotes_the_winner(
    world: World, page: Page, tmp_path: Path
) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/endpoints")
    form = page.locator("#create-endpoint")
    form.locator("input[name=name]").fill("desk")
    form.locator("select[name=prompt]").select_option("support")
    form.locator("select[name=model]").select_option("small")
    form.locator("input[name=description]").fill("Answers customers at the help desk")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(f"{world.server.url}/console/endpoints/desk")
    expect(page.locator("[data-testid=served-version]")).to_have_text("v1")
    expect(page.locator("[data-testid=endpoint-model]")).to_contain_text("small")
    expect(page.locator(".spec")).to_contain_text("Answers customers at the help desk")

    # Two variants: a (the endpoint's own version and model), b (version 2 on model other).
    for name, version, model in (("a", "", ""), ("b", "2", "other")):
        adding = page.locator(".add-variant")
        if adding.get_attribute("open") is None:
            adding.locator("summary").click()
        adding.locator("input[name=variant]").fill(name)
        adding.locator("select[name=version]").select_option(version)
        adding.locator("select[name=model]").select_option(model)
        adding.locator("button[type=submit]").click()
        expect(page.locator("#endpoint-body .flash.ok")).to_have_text(
            f"variant {name} added: a new experiment started"
        )
    page.fill("input[name='weight.b']", "3")
    page.click(".weights button[type=submit]")
    expect(page.locator("#endpoint-body .flash.ok")).to_have_text("weights saved: a new experiment started")
    with world.server.client() as admin:
        variants = admin.get("/api/endpoints/desk").json()["variants"]
    assert [(v["name"], v["weight"], v.get("version"), v.get("model")) for v in variants] == [
        ("a", 1.0, None, None),
        ("b", 3.0, 2, "other"),
    ]

    # Calls split over the variants; b's answers are liked, a's are not.
    served: dict[str, list[str]] = {"a": [], "b": []}
    for i in range(16):
        trace, upstream = _call(world, f"user-{i}")
        served["b" if upstream == "up-other" else "a"].append(trace)
    with world.server.client() as admin:
        for variant, traces in served.items():
            for trace in traces:
                read_span(world.server, trace)
                thumbs = {"trace_id": trace, "kind": "thumbs", "value": 1 if variant == "b" else -1}
                assert admin.post("/api/feedback", json=thumbs).status_code == 201
        report = admin.get("/api/endpoints/desk/experiment").json()

    page.reload()
    for variant in report["variants"]:
        row = page.locator(f"[data-testid=results] tr[data-variant='{variant['name']}']")
        expect(row.locator("[data-testid=calls]")).to_have_text(str(variant["calls"]))
        assert variant["calls"] == len(served[variant["name"]])
        successes, n = variant["positive_feedback"]["successes"], variant["positive_feedback"]["n"]
        expect(row.locator("[data-testid=positive]")).to_contain_text(f"({successes}/{n})")
    expect(page.locator("[data-testid=verdict]")).to_have_text(report["verdict"])
    if served["b"]:
        expect(page.locator("tr[data-variant='b'] [data-testid=positive]")).to_contain_text("100.0%")
    screenshot(page, "console-endpoint", tmp_path)

    page.locator("tr[data-variant='b'] button").click()  # confirm() is accepted by watch_dialogs
    expect(page.locator("#endpoint-body .flash.ok")).to_have_text("variant b promoted: it alone serves now")
    expect(page.locator("[data-testid=served-version]")).to_have_text("v2")
    expect(page.locator("[data-testid=events] li").first).to_contain_text("promoted")
    with world.server.client() as admin:
        promoted = admin.get("/api/endpoints/desk").json()
    assert (promoted["variants"], promoted["model"], promoted["label"]) == ([], "other", "production")

    # The endpoint now serves version 2 on `other`.
    _, upstream = _call(world, "after")
    assert upstream == "up-other"
    assert (
        world.mock.state.requests[-1]["body"]["messages"][0]["content"] == "You answer for Acme in one word."
    )

    # A hostile description shows as text on both pages.
    with world.server.client() as admin:
        assert admin.patch("/api/endpoints/desk", json={"description": XSS}).status_code == 200
    page.reload()
    expect(page.locator(".spec")).to_contain_text(XSS)
    page.goto(f"{world.server.url}/console/endpoints")
    expect(page.locator("[data-testid=endpoints]")).to_contain_text(XSS)
    assert page.locator("img[src=x], svg[onload]").count() == 0
    assert dialogs == ["confirm: Serve only b from now on? This ends the experiment."]


def test_bad_input_and_roles_over_http(world: World) -> None:
    with httpx.Client(base_url=world.server.url, timeout=30) as client:
        client.post("/login", data={"api_key": world.engineer_key})
        token = re.search(r'data-csrf="([^"]+)"', client.get("/console/endpoints").text)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1), "HX-Request": "true"}
        for form, message in (
            ({"name": "Bad Name!"}, "name: String should match pattern"),
            ({"name": "x1", "model": "nope"}, "model: model 'nope' does not exist"),
            ({"name": "x2", "prompt": "support", "version": "9"}, "version: no version 9"),
            ({"name": "x3", "prompt": "support", "version": "two"}, "version must be a whole number"),
        ):
            bad = client.post("/console/endpoints", data=form, headers=headers)
            assert bad.status_code == 400, (form, bad.text)
            assert message in html.unescape(bad.text), bad.text
        created = client.post("/console/endpoints", data={"name": "plain", "model": "small"}, headers=headers)
        assert created.headers["hx-redirect"] == "/console/endpoints/plain"
        bad_weight = client.post("/console/endpoints/plain/weights", data={"weight.a": "x"}, headers=headers)
        assert bad_weight.status_code == 400
        no_variants = client.post("/console/endpoints/plain/weights", data={"weight.a": "2"}, headers=headers)
        assert "has no variants to weigh" in no_variants.text
        unknown = client.post("/console/endpoints/plain/promote", data={"variant": "zz"}, headers=headers)
        assert unknown.status_code == 409  # no experiment runs
        missing = client.get("/console/endpoints/nothing-here")
        assert missing.status_code == 404
        assert "no endpoint named" in missing.text
        stale = client.post("/console/endpoints", data={"name": "x4", "model": "small"})
        assert stale.status_code == 403
    with httpx.Client(base_url=world.server.url, timeout=30) as consumer:
        consumer.post("/login", data={"api_key": world.consumer_key})
        assert consumer.get("/console/endpoints").status_code == 403
        assert consumer.get("/console/endpoints/plain").status_code == 403
