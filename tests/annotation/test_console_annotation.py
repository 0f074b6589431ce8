"""Annotation queues in a real browser against a real server whose traces came through the gateway:
an engineer makes a queue in the console, an annotator works through three items with the keyboard
only (their decisions arrive as feedback and export as a dataset version), and "Add to dataset" on a
trace's page makes a version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.gateway import gateway_server, read_span, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

QUESTIONS = ["Where is my parcel?", "Why was I charged twice?", "Can I pay by invoice?"]


@dataclass
class Site:
    server: RunningServer
    engineer: str
    annotator: str
    traces: list[str]  # oldest first


@pytest.fixture(scope="module")
def site(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with gateway_server(
        tmp_path_factory.mktemp("console-annotation"), {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
    ) as server:
        with server.client() as admin:
            model = {"alias": "talker", "provider": "openai", "model": "ok-talker", "base_url": mock.url}
            assert admin.post("/api/models", json=model).status_code == 201
        traces = []
        with sdk(server) as client:
            for question in QUESTIONS:
                raw = client.chat.completions.with_raw_response.create(
                    model="talker", messages=[{"role": "user", "content": question}]
                )
                traces.append(raw.headers["x-fmops-trace-id"])
        for trace in traces:
            read_span(server, trace)
        yield Site(
            server=server,
            engineer=create_user_key(server, "erin", "engineer"),
            annotator=create_user_key(server, "anna", "annotator"),
            traces=traces,
        )


def test_an_engineer_makes_a_queue_in_the_console(site: Site, page: Page, tmp_path: Path) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, site.server, site.engineer)
    page.goto(f"{site.server.url}/console/annotation")
    form = page.locator("[data-testid=queue-form]")
    form.locator("input[name=name]").fill("console-made")
    form.locator("input[name=model]").fill("talker")
    form.locator("textarea[name=labels]").fill("topic = billing, shipping, other")
    form.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=done]")).to_have_text("0/3")
    assert "/console/annotation/" in page.url
    expect(page.locator(".facts")).to_contain_text("topic: billing, shipping, other")
    page.goto(f"{site.server.url}/console/annotation")
    expect(page.locator("tr[data-queue=console-made]")).to_contain_text("model: talker")
    screenshot(page, "console-annotation-queues", tmp_path)
    # A mistake is a message on the page, and nothing is made.
    form.locator("input[name=name]").fill("second")
    form.locator("input[name=model]").fill("no-such-model")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("no chat traces match the filter")
    assert dialogs == []


def test_an_annotator_works_through_three_items_with_the_keyboard(
    site: Site, page: Page, tmp_path: Path
) -> None:
    with site.server.client(site.engineer) as eng:
        body = {
            "name": "keys",
            "label_schema": [{"name": "topic", "values": ["billing", "shipping", "other"]}],
        }
        queue = eng.post("/api/annotation-queues", json=body)
        assert queue.status_code == 201, queue.text
    sign_in(page, site.server, site.annotator)
    assert page.url.endswith("/console/annotate")  # an annotator lands on their queues
    expect(page.locator("nav.sidebar a")).to_have_text(["Annotate"])  # and sees nothing else
    page.click("[data-queue=keys] a")
    item = page.locator("[data-testid=item]")
    expect(page.locator("[data-testid=save-correction]")).to_be_hidden()

    def current() -> str:
        expect(item).to_have_attribute("data-keys", "ready")  # annotate.js is listening
        value = item.get_attribute("data-item")
        assert value
        return value

    # Item 1 (the newest trace): topic 2 (shipping), accept.
    first = current()
    expect(page.locator("[data-testid=answer]")).to_have_text(REPLY)
    page.keyboard.press("2")
    expect(page.locator("input[value=shipping]")).to_be_checked()
    screenshot(page, "console-annotate", tmp_path)
    page.keyboard.press("a")
    expect(item).not_to_have_attribute("data-item", first)
    # Item 2: topic 1 (billing), then c, write the better answer, Ctrl+Enter.
    second = current()
    page.keyboard.press("1")
    page.keyboard.press("c")
    expect(page.locator("[data-testid=correction]")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("You were charged once; the second line is a hold.")
    page.keyboard.press("Control+Enter")
    expect(item).not_to_have_attribute("data-item", second)
    # Item 3: skip.
    current()
    page.keyboard.press("s")
    expect(page.locator("[data-testid=all-done]")).to_be_visible()
    expect(page.locator("[data-testid=done]")).to_have_text("2/3")
    expect(page.locator("[data-testid=skipped]")).to_have_text("1")

    # Each decision is feedback on its trace; the export holds the corrected answer.
    newest, middle, oldest = site.traces[2], site.traces[1], site.traces[0]
    with site.server.client(site.engineer) as eng:
        kinds = {
            (s["kind"], s["label"], s["author"]) for s in eng.get(f"/api/traces/{newest}/feedback").json()
        }
        assert kinds == {("thumbs", None, "anna"), ("label", "shipping", "anna")}
        fixed = [s for s in eng.get(f"/api/traces/{middle}/feedback").json() if s["kind"] == "correction"]
        assert fixed[0]["corrected_output"]["content"] == "You were charged once; the second line is a hold."
        assert eng.get(f"/api/traces/{oldest}/feedback").json() == []
        exported = eng.post("/api/annotation-queues/keys/export", json={})
        assert (exported.status_code, exported.json()["rows"]) == (201, 2), exported.text


def test_add_a_trace_to_a_dataset_from_its_page(site: Site, page: Page) -> None:
    sign_in(page, site.server, site.engineer)
    for expected, trace in (("picked@1", site.traces[0]), ("picked@2", site.traces[1])):
        page.goto(f"{site.server.url}/console/traces/{trace}")
        form = page.locator("[data-testid=add-to-dataset]")
        form.locator("input[name=name]").fill("picked")
        form.locator("button[type=submit]").click()
        expect(page.locator("[data-testid=added]")).to_contain_text(expected)
    expect(page.locator("[data-testid=added]")).to_contain_text("(2 records)")
