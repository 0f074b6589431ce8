"""The console's Build pages in a real browser against a real server and the real default model.

An engineer edits a prompt (pushes version 2), compares versions 1 and 2 in the playground with
SmolLM2 (llama.cpp), promotes version 2, and the endpoint serving the prompt's production label
then answers with version 2, through the gateway and in the chat. The models page adds a model
and tests one. Hostile text in a prompt's description, a version's message and a model's name shows
as text and runs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.gateway import gateway_server
from support.server import RunningServer

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
MODEL = "smollm2-135m-instruct"
HELLO = "Hello! My name is Ada."
V1 = {
    "name": "greeter",
    "description": f"Greets people. {XSS}",
    "model": MODEL,
    "params": {"max_tokens": 16, "temperature": 0},
    "messages": [
        {"role": "system", "content": "You are a polite receptionist. Answer in one short sentence."}
    ],
    "message": f"first draft {XSS}",
    "labels": ["production"],
}
V2_YAML = f"""\
name: greeter
model: {MODEL}
params:
  max_tokens: 16
  temperature: 0
messages:
  - role: system
    content: You are a cheerful pirate. Answer in one short sentence, like a pirate.
"""


@dataclass
class World:
    server: RunningServer
    engineer_key: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with gateway_server(tmp_path_factory.mktemp("console-build")) as server:
        with server.client() as admin:
            assert admin.post("/api/prompts", json=V1).status_code == 201
            made = admin.post("/api/endpoints", json={"name": "greeter-bot", "prompt": "greeter"})
            assert made.status_code == 201, made.text
        yield World(server, create_user_key(server, "eng", "engineer"))


def _prompt_version(client: httpx.Client, trace_id: str) -> int:
    """The prompt version a call through the greeter-bot endpoint used, from its stored trace."""
    deadline = time.monotonic() + 10
    while (found := client.get(f"/api/traces/{trace_id}")).status_code == 404:
        assert time.monotonic() < deadline, "the call's trace was never stored"
        time.sleep(0.05)
    span: dict[str, Any] = next(s for s in found.json()["spans"] if s["prompt_name"])
    assert (span["endpoint"], span["prompt_name"]) == ("greeter-bot", "greeter")
    return int(span["prompt_version"])


def _served_version(server: RunningServer, key: str) -> int:
    """Call the endpoint as an application does; the prompt version its trace records."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        resp = client.post(
            "/v1/chat/completions",
            json={"model": "greeter-bot", "messages": [{"role": "user", "content": HELLO}]},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].strip()
        return _prompt_version(client, resp.headers["x-fmops-trace-id"])


def test_an_engineer_edits_compares_and_promotes_a_prompt_that_the_chat_then_uses(
    page: Page, world: World, tmp_path: Path
) -> None:
    server = world.server
    assert _served_version(server, world.engineer_key) == 1
    dialogs = watch_dialogs(page)
    sign_in(page, server, world.engineer_key)
    page.locator("nav.sidebar").get_by_role("link", name="Prompts", exact=True).click()
    row = page.locator("tr[data-prompt=greeter]")
    expect(row).to_contain_text(XSS)  # the description, as text
    expect(row).to_contain_text("production → v1")

    # Edit: push version 2 from the editor.
    row.get_by_role("link", name="greeter").click()
    expect(page.locator("p.description")).to_have_text(V1["description"])
    expect(page.locator("tr[data-version='1']")).to_contain_text(V1["message"])
    page.get_by_test_id("prompt-yaml").fill(V2_YAML)
    page.fill("#editor input[name=message]", "a pirate's voice")
    page.click("#editor button[type=submit]")
    expect(page.locator("p.flash.ok")).to_have_text("Pushed version 2.")
    expect(page.locator("tr[data-version='2']")).to_contain_text("a pirate's voice")
    expect(page.locator("tr[data-version='2']")).to_contain_text("eng")
    expect(page.get_by_test_id("diff").locator(".add").first).to_contain_text("pirate")
    expect(page.get_by_test_id("diff").locator(".del").first).to_contain_text("receptionist")

    # Compare versions 1 and 2 side by side with the default model.
    page.get_by_test_id("open-playground").click()
    expect(page.locator("input[name=versions][value='1']")).to_be_checked()
    expect(page.locator("input[name=versions][value='2']")).to_be_checked()
    page.fill("textarea[name=message]", HELLO)
    page.fill("input[name=max_tokens]", "28")  # whole sentences for the screenshot
    page.check(f"input[name=models][value='{MODEL}']")
    page.click("button:has-text('Run side by side')")
    results = page.locator(".result")
    expect(results).to_have_count(2, timeout=60_000)
    for version in ("1", "2"):
        cell = page.locator(f".result[data-version='{version}']")
        expect(cell).to_contain_text(f"greeter v{version}")
        expect(cell.get_by_test_id("output")).not_to_be_empty()
        expect(cell.locator("[data-stat=tokens]")).to_contain_text(" / ")
        expect(cell.locator("[data-stat=latency]")).to_contain_text("ms")
    page.locator("#results").scroll_into_view_if_needed()
    screenshot(page, "console-playground", tmp_path)

    # Promote version 2: the production label moves, and the endpoint serves it at once.
    page.goto(f"{server.url}/console/prompts/greeter")
    page.get_by_test_id("promote-2").click()
    expect(page.locator("tr[data-version='2'] [data-label=production]")).to_be_visible()
    expect(page.locator("#flash")).to_contain_text("Label production now points at version 2")
    assert _served_version(server, world.engineer_key) == 2

    # The chat: a person picks the endpoint, and the answer comes from version 2.
    page.get_by_role("link", name="Chat", exact=True).click()
    page.get_by_test_id("endpoint-picker").select_option("greeter-bot")
    page.locator("details.options summary").click()
    page.get_by_test_id("max-tokens").fill("16")
    page.get_by_test_id("message-input").fill(HELLO)
    page.get_by_test_id("send").click()
    reply = page.locator("article[data-role=assistant]:not([data-trace-id=''])")
    expect(reply).to_have_count(1, timeout=60_000)
    expect(reply.get_by_test_id("reply")).not_to_be_empty()
    with server.client() as admin:
        assert _prompt_version(admin, reply.get_attribute("data-trace-id") or "") == 2
        assert admin.get("/api/prompts/greeter", params={"label": "production"}).json()["version"] == 2
    assert dialogs == []


def test_the_models_page_adds_a_model_and_tests_one_safely(page: Page, world: World) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/models")
    expect(page.locator(f"tr[data-model='{MODEL}']")).to_contain_text("llamacpp")
    form = page.locator("#add-model form")
    form.locator("input[name=alias]").fill("hostile")
    form.locator("input[name=model]").fill(XSS)  # the provider-side id may be any text
    form.locator("input[name=input_price]").fill("1.5")
    form.locator("input[value=tools]").check()
    form.locator("button[type=submit]").click()
    added = page.locator("tr[data-model=hostile]")
    expect(added).to_contain_text(XSS)
    expect(added).to_contain_text("1.50")
    expect(added).to_contain_text("tools")
    expect(page.locator("#flash")).to_contain_text("Added model hostile (openai).")

    test = page.locator("#test-model form")
    test.locator("select[name=model]").select_option(MODEL)
    test.locator("textarea[name=prompt]").fill("Say hello in five words.")
    test.locator("input[name=max_tokens]").fill("8")
    test.locator("button[type=submit]").click()
    result = page.get_by_test_id("test-result")
    expect(result.locator("pre.output")).not_to_be_empty(timeout=60_000)
    expect(result.locator("[data-stat=tokens]")).to_contain_text(" / ")
    trace_link = result.locator("a[href^='/console/traces/']")
    expect(trace_link).to_be_visible()
    with world.server.client() as admin:
        model = admin.get("/api/models/hostile").json()
        assert (model["model"], model["capabilities"]) == (XSS, {"tools": True})
    assert dialogs == []
