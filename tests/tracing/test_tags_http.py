"""Tags end to end on a real server: set by the OpenAI SDK's `metadata` and by OTLP attributes, stored
by the trace writer, filtered and shown by /api/traces and the console, bad tags refused with 400s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

import fmops
from support.gateway import add_models, gateway_server, openai_model, sdk, wait_for
from support.mock_upstream import MockUpstream
from support.otlp import json_body, json_span
from support.server import RunningServer


@dataclass
class Calls:
    server: RunningServer
    prod: str  # tagged env:prod and team-a
    plain: str  # no tags
    app: str  # an application's span over OTLP, tagged env:prod (Langfuse's attribute)


@pytest.fixture(scope="module")
def calls(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Calls]:
    home = tmp_path_factory.mktemp("tags-http")
    with gateway_server(home) as server:
        add_models(home, {"talker": openai_model("ok-talker", mock.url)})
        client = sdk(server)
        ask = client.chat.completions.with_raw_response.create
        prod = ask(
            model="talker",
            messages=[{"role": "user", "content": "hi"}],
            metadata={"tags": "env:prod, team-a", "other": "kept"},
        ).headers["x-fmops-trace-id"]
        plain = ask(model="talker", messages=[{"role": "user", "content": "hi"}]).headers["x-fmops-trace-id"]
        app = json_span("retrieve", {"langfuse.trace.tags": ["env:prod"]})
        sent = httpx.post(
            server.url + "/v1/traces",
            content=json_body(app),
            headers={"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"},
        )
        assert sent.status_code == 200, sent.text
        calls = Calls(server, prod, plain, app["traceId"])
        with server.client() as api:
            assert wait_for(lambda: len(api.get("/api/traces", params={"limit": 10}).json()["data"]) == 3)
        yield calls


def test_tags_set_by_a_call_are_filtered_and_shown_by_the_api(calls: Calls) -> None:
    with calls.server.client() as api:
        prod = api.get("/api/traces", params={"tags": "env:prod"}).json()["data"]
        assert {s["trace_id"] for s in prod} == {calls.prod, calls.app}
        both = api.get("/api/traces", params={"tags": "env:prod,team-a"}).json()["data"]
        assert [(s["trace_id"], s["tags"]) for s in both] == [(calls.prod, ["env:prod", "team-a"])]
        plain = api.get(f"/api/traces/{calls.plain}").json()["spans"][0]
        assert plain["tags"] == []
        tree = api.get(f"/api/traces/{calls.prod}").json()["spans"][0]
        assert tree["tags"] == ["env:prod", "team-a"]
        assert tree["input"]["params"]["metadata"]["other"] == "kept"
        bad = api.get("/api/traces", params={"tags": "ok,no spaces please"})
        assert bad.status_code == 400  # the rule is in the OpenAPI schema (a pattern), and said
        assert bad.json()["error"]["param"] == "tags"
        assert "should match pattern" in bad.json()["error"]["message"]


def test_the_sdk_filters_by_tags(calls: Calls) -> None:
    with fmops.Client(base_url=calls.server.url, api_key=calls.server.admin_key) as client:
        page = client.traces.search(tags=["env:prod", "team-a"])
    assert [(s.trace_id, s.tags) for s in page.data] == [(calls.prod, ["env:prod", "team-a"])]


def test_a_bad_tag_in_metadata_is_a_clear_400_before_the_call(calls: Calls, mock: MockUpstream) -> None:
    client = sdk(calls.server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="talker", messages=[{"role": "user", "content": "hi"}], metadata={"tags": "ok,not ok"}
        )
    assert "metadata.tags: 'not ok' is not a valid tag" in caught.value.message


def test_the_console_filters_by_tags_and_shows_them(calls: Calls) -> None:
    with httpx.Client(base_url=calls.server.url, timeout=30) as browser:
        browser.post("/login", data={"api_key": calls.server.admin_key})
        listed = browser.get("/console/traces", params={"tags": "team-a, env:prod", "spans": "all"})
        assert listed.status_code == 200, listed.text
        assert calls.prod in listed.text
        assert calls.plain not in listed.text
        assert calls.app not in listed.text
        detail = browser.get(f"/console/traces/{calls.prod}")
        assert 'data-testid="span-tags"><span class="badge">env:prod</span> <span class="badge">team-a' in (
            detail.text
        )
        bad = browser.get("/console/traces", params={"tags": "a b"})
        assert bad.status_code == 400
        assert "is not a valid tag" in bad.text
