"""The traces explorer in a real browser against a real server: calls made through the gateway (mock
upstream) and spans sent over OTLP are listed, filtered without a reload, paged by cursor and opened;
feedback given through the API shows on the trace and feedback added on the page reaches the API;
hostile names, messages and attributes show as text and run nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import openai
import pytest
from playwright.sync_api import Page, expect

from fmops.errors import UserError
from fmops.store import Store
from fmops.store.models import Score
from fmops.web.routers.console_traces_view import FeedbackSummary, feedback_by_trace, read_query
from support.browser import create_user_key, screenshot, sign_in, watch_dialogs
from support.gateway import gateway_server, read_span, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.otlp import json_body, json_span, span_id, trace_id
from support.server import RunningServer

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'><svg onload=alert(3)>"
QUESTIONS = ["What are your opening hours?", "Can I change my delivery address?", "Do you ship abroad?"]


@dataclass
class World:
    server: RunningServer
    engineer_key: str
    consumer_key: str
    zebra: str  # trace of the call about zebras, liked through the API
    hostile: str  # trace whose message, user and session id are the payload
    failed: str
    otlp: str  # an application's trace sent over OTLP: hostile names and attributes, two spans


def _wait_trace(server: RunningServer, trace: str) -> None:
    deadline = time.monotonic() + 10
    with server.client() as admin:
        while not admin.get("/api/traces", params={"trace_id": trace}).json()["data"]:
            assert time.monotonic() < deadline, f"trace {trace} never stored"
            time.sleep(0.05)


def _send_hostile_spans(server: RunningServer) -> str:
    """An application's trace over OTLP/JSON: a root and a child, the payload in names and attributes."""
    otlp, root = trace_id(), span_id()
    hostile_attributes = {"user.id": XSS, "session.id": XSS, "app.note": XSS, XSS: "key"}
    body = json_body(
        json_span(XSS, hostile_attributes, trace=otlp, span=root, duration_ms=40),
        json_span(
            f"retrieve {XSS}",
            {"input.value": XSS, "output.value": XSS},
            trace=otlp,
            parent=root,
            start_ns=time.time_ns() + 5_000_000,
            duration_ms=20,
        ),
    )
    sent = httpx.post(
        server.url + "/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"},
    )
    assert sent.status_code == 200, sent.text
    return otlp


@pytest.fixture(scope="module")
def world(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("console-traces")
    with gateway_server(home, {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}) as server:
        with server.client() as admin:
            for alias, upstream in (("talker", "ok-talker"), ("broken", "always-500")):
                model = {"alias": alias, "provider": "openai", "model": upstream, "base_url": mock.url}
                model |= {"input_price": 2.5, "output_price": 10.0}
                assert admin.post("/api/models", json=model).status_code == 201
        client = sdk(server)
        # The hostile and failed calls first: the newest rows (the screenshot's) are ordinary ones.
        hostile = client.chat.completions.with_raw_response.create(
            model="talker",
            messages=[{"role": "user", "content": XSS}],
            user=XSS,
            extra_headers={"x-fmops-session-id": XSS},
        ).headers["x-fmops-trace-id"]
        otlp = _send_hostile_spans(server)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
        failed = caught.value.response.headers["x-fmops-trace-id"]
        for i, question in enumerate(QUESTIONS):
            client.chat.completions.create(
                model="talker", messages=[{"role": "user", "content": question}], user=f"user-{i}"
            )
        zebra = client.chat.completions.with_raw_response.create(
            model="talker",
            messages=[
                {"role": "system", "content": "You are a helpful road-safety assistant."},
                {"role": "user", "content": "Tell me about the ZEBRA crossing"},
            ],
            user="carol",
            extra_headers={"x-fmops-session-id": "s-42"},
        ).headers["x-fmops-trace-id"]
        for trace in (zebra, hostile, failed):
            read_span(server, trace)
        _wait_trace(server, otlp)
        with server.client() as admin:
            for trace, value, comment in ((zebra, 1, "great answer about zebras"), (hostile, -1, XSS)):
                score = {"trace_id": trace, "kind": "thumbs", "value": value, "comment": comment}
                assert admin.post("/api/feedback", json=score).status_code == 201
        yield World(
            server=server,
            engineer_key=create_user_key(server, "erin", "engineer"),
            consumer_key=create_user_key(server, "cody", "consumer"),
            zebra=zebra,
            hostile=hostile,
            failed=failed,
            otlp=otlp,
        )


def test_an_engineer_filters_traces_opens_one_and_scores_it(world: World, page: Page, tmp_path: Path) -> None:
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/traces")
    rows = page.locator("table.traces tbody tr[data-trace]")
    expect(rows).to_have_count(7)  # 5 calls, 1 failed call, 1 OTLP root (its child is not top-level)
    expect(page.locator(f"tr[data-trace='{world.failed}'] .badge.bad")).to_have_text("error")
    expect(page.locator(f"tr[data-trace='{world.zebra}'] .thumb.up")).to_have_text("▲ 1")
    screenshot(page, "console-traces", tmp_path)

    # Filters apply without a reload (the marker survives) and the URL carries them.
    page.evaluate("window.__same_page = true")
    page.fill("input[name=model]", "talker")
    page.press("input[name=model]", "Enter")
    expect(rows).to_have_count(5)
    expect(page).to_have_url(re.compile(r"/console/traces\?model=talker$"))
    page.select_option("select[name=feedback]", "positive")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-trace", world.zebra)
    assert page.evaluate("window.__same_page") is True
    assert "feedback=positive" in page.url

    # The shared URL opens the same view.
    page.goto(page.url)
    expect(rows).to_have_count(1)
    expect(page.locator("input[name=model]")).to_have_value("talker")

    rows.first.locator("a.span-name").click()
    expect(page).to_have_url(f"{world.server.url}/console/traces/{world.zebra}")
    expect(page.locator(".bubble.user .text")).to_have_text("Tell me about the ZEBRA crossing")
    expect(page.locator(".bubble.system .text")).to_have_text("You are a helpful road-safety assistant.")
    expect(page.locator(".bubble.assistant .text")).to_have_text(REPLY)
    expect(page.locator("[data-testid=scores]")).to_contain_text("great answer about zebras")
    link = page.locator("[data-testid=open-playground]")
    expect(link).to_have_attribute("href", f"/console/playground?trace_id={world.zebra}")

    page.select_option(".feedback-form select[name=kind]", "number")
    page.fill(".feedback-form input[name=name]", "accuracy")
    page.fill(".feedback-form input[name=value]", "0.8")
    page.fill(".feedback-form textarea[name=comment]", "checked by hand")
    page.click(".feedback-form button[type=submit]")
    expect(page.locator("#trace-feedback .flash.ok")).to_have_text("feedback recorded")
    expect(page.locator("[data-testid=scores] tbody tr")).to_have_count(2)
    with world.server.client() as admin:
        scores = admin.get(f"/api/traces/{world.zebra}/feedback").json()
    added = next(s for s in scores if s["name"] == "accuracy")
    assert (added["kind"], added["value"], added["comment"], added["author"]) == (
        "number",
        0.8,
        "checked by hand",
        "erin",
    )


def test_hostile_names_messages_and_attributes_show_as_text(world: World, page: Page) -> None:
    dialogs = watch_dialogs(page)
    sign_in(page, world.server, world.engineer_key)
    page.goto(f"{world.server.url}/console/traces")
    expect(page.locator(f"tr[data-trace='{world.otlp}'] .span-name")).to_have_text(XSS)
    expect(page.locator(f"tr[data-trace='{world.hostile}']")).to_contain_text(XSS)

    page.goto(f"{world.server.url}/console/traces/{world.hostile}")
    expect(page.locator(".bubble.user .text")).to_have_text(XSS)
    expect(page.locator("[data-testid=scores]")).to_contain_text(XSS)
    expect(page.locator("dl.facts").first).to_contain_text(XSS)  # user and session

    page.goto(f"{world.server.url}/console/traces/{world.otlp}")
    expect(page.locator(".waterfall .span-name")).to_have_text([XSS, f"retrieve {XSS}"])
    page.locator("details.span").nth(1).locator(":scope > summary").click()
    page.locator("details.attributes").first.locator("summary").click()
    expect(page.locator("table.attrs").first).to_contain_text(XSS)

    # The payload typed into a filter comes back as the input's value, not as markup.
    page.goto(f"{world.server.url}/console/traces?{urlencode({'user': XSS})}")
    expect(page.locator("input[name=user]")).to_have_value(XSS)
    expect(page.locator("table.traces tbody tr[data-trace]")).to_have_count(2)  # the call and the app

    assert page.locator("img[src=x], svg[onload], script:not([src])").count() == 0
    assert dialogs == []


@contextmanager
def _signed_in(server: RunningServer, key: str) -> Iterator[tuple[httpx.Client, str]]:
    """A cookie session as a browser holds it, and its CSRF token (read from the page)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/login", data={"api_key": key})
        token = re.search(r'data-csrf="([^"]+)"', client.get("/console/traces").text)
        yield client, token.group(1) if token else ""


def test_paging_errors_and_roles_over_http(world: World) -> None:
    with _signed_in(world.server, world.engineer_key) as (client, csrf):
        seen: list[str] = []
        url = "/console/traces?model=talker&limit=2"
        pages = 0
        while url:
            page = client.get(url, headers={"HX-Request": "true"})
            assert page.status_code == 200, page.text
            assert page.text.lstrip().startswith('<div id="trace-results">')  # a fragment, not a page
            assert "cursor" not in url or page.headers["hx-push-url"] == url.replace("&amp;", "&")
            seen += re.findall(r'<tr data-trace="([0-9a-f]+)"', page.text)
            older = re.search(r'data-testid="older" href="([^"]+)"', page.text)
            url = older.group(1).replace("&amp;", "&") if older else ""
            pages += 1
        assert pages == 3
        assert len(seen) == len(set(seen)) == 5

        for query, message in (
            ("status=maybe", "status must be one of ok, error"),
            ("cursor=!!", "cursor is not valid"),
            ("limit=100000", "limit must be between 1 and 200"),
            ("prompt_version=2", "prompt_version needs prompt_name"),
        ):
            bad = client.get(f"/console/traces?{query}")
            assert bad.status_code == 400, (query, bad.text)
            assert message in bad.text
        missing = client.get("/console/traces/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404
        assert "no trace with id" in missing.text

        stale = client.post(f"/console/traces/{world.zebra}/feedback", data={"kind": "up"})
        assert stale.status_code == 403
        bad_score = client.post(
            f"/console/traces/{world.zebra}/feedback",
            data={"kind": "number", "value": "lots"},
            headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
        )
        assert bad_score.status_code == 400
        assert "a number score needs a numeric value" in bad_score.text

    with _signed_in(world.server, world.consumer_key) as (consumer, _):
        denied = consumer.get("/console/traces")
        assert denied.status_code == 403
        assert world.zebra not in denied.text


def test_feedback_is_summed_per_trace_of_the_page(store: Store) -> None:
    project, other = "p" * 32, "o" * 32
    rows = [
        (project, "t1", "thumbs", 1.0, "human"),
        (project, "t1", "thumbs", 1.0, "api"),
        (project, "t1", "thumbs", -1.0, "human"),
        (project, "t1", "number", 0.4, "evaluator"),
        (project, "t2", "comment", None, "human"),
        (other, "t2", "thumbs", 1.0, "human"),  # another project's score on the same trace id
        (project, "t3", "thumbs", -1.0, "human"),  # not on the page
    ]
    with store.session() as session:
        for project_id, trace, kind, value, source in rows:
            session.add(
                Score(project_id=project_id, trace_id=trace, name=kind, kind=kind, value=value, source=source)
            )
    found = feedback_by_trace(store, project, ["t1", "t2", "t9"])
    assert found == {"t1": FeedbackSummary(up=2, down=1, other=1), "t2": FeedbackSummary(other=1)}
    assert feedback_by_trace(store, project, []) == {}


def test_filters_are_read_from_the_url_and_written_back_without_empty_fields() -> None:
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    query = read_query({"model": " talker ", "status": "", "range": "1h", "spans": "all", "q": ""}, now)
    assert query.values == {"model": "talker", "range": "1h", "spans": "all"}
    assert (query.filters.model, query.filters.start, query.filters.root_only) == (
        "talker",
        now - timedelta(hours=1),
        False,
    )
    assert (query.limit, query.cursor) == (50, None)
    assert query.url(cursor="abc") == "/console/traces?model=talker&range=1h&spans=all&cursor=abc"
    assert read_query({}).filters.root_only is True
    with pytest.raises(UserError, match="feedback must be one of"):
        read_query({"feedback": "lots"})
    with pytest.raises(UserError, match="user is longer than 200 characters"):
        read_query({"user": "u" * 201})
