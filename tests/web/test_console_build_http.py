"""The console's Build pages over plain HTTP (no browser): roles, CSRF, bad input, every action.

One real `fmops up` (SQLite) for the module; the default local model (SmolLM2 on llama.cpp)
answers the test calls, so what the pages show is what the gateway really did.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from support.browser import create_user_key
from support.gateway import gateway_server
from support.server import RunningServer

MODEL = "smollm2-135m-instruct"
PROMPT = {
    "name": "faq",
    "description": "Answers questions",
    "model": MODEL,
    "params": {"max_tokens": 8, "temperature": 0},
    "messages": [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Topic: {{ topic }}"},
    ],
    "labels": ["production"],
}
HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with gateway_server(tmp_path_factory.mktemp("build-http")) as server:
        with server.client() as admin:
            assert admin.post("/api/prompts", json=PROMPT).status_code == 201
        yield server


class Web:
    """A signed-in browser session without a browser: the cookie and the page's CSRF token."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=60)
        signed = self.http.post("/login", data={"api_key": key, "next": "/"})
        assert signed.status_code == 303, signed.text
        # Every page carries it, the 403 page a consumer gets from the console included.
        found = re.search(r'data-csrf="([^"]+)"', self.page("/console").text)
        self.csrf = found.group(1) if found else ""

    def page(self, path: str) -> httpx.Response:
        return self.http.get(path, follow_redirects=True)

    def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, htmx: bool = True
    ) -> httpx.Response:
        headers = dict(HTMX) if htmx else {}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self.http.post(path, data=data, headers=headers)


@pytest.fixture(scope="module")
def engineer(running: RunningServer) -> Iterator[Web]:
    web = Web(running, create_user_key(running, "eng", "engineer"))
    assert web.csrf
    yield web
    web.http.close()


def test_an_engineer_opens_every_build_page_fast(running: RunningServer, engineer: Web) -> None:
    expected = {
        "/console/models": [MODEL, "Test a model", "Add a model"],
        "/console/prompts": ["faq", "Answers questions", "production → v1"],
        "/console/prompts/faq": ["v1", "Push new version", "Topic: {{ topic }}"],
        "/console/playground?prompt=faq&versions=1": ['name="var.topic"', 'value="1" checked'],
    }
    for path, texts in expected.items():
        engineer.page(path)  # warm: the first request of a route compiles its template
        started = time.perf_counter()
        resp = engineer.page(path)
        elapsed = time.perf_counter() - started
        assert resp.status_code == 200, (path, resp.text[:500])
        assert resp.headers["content-type"].startswith("text/html")
        for text in texts:
            assert text.replace("{", "&#123;") in resp.text or text in resp.text, (path, text)
        assert elapsed < 0.5, f"{path} took {elapsed * 1000:.0f} ms"
    nav = engineer.page("/console").text
    for title in ("Models", "Prompts", "Playground"):
        assert f">{title}</a>" in nav
    css = engineer.page("/static/build.css")
    assert css.status_code == 200
    assert "#flash" in css.text


def test_a_consumer_gets_a_403_page_not_the_console(running: RunningServer) -> None:
    consumer = Web(running, create_user_key(running, "reader", "consumer"))
    for path in ("/console/models", "/console/prompts/faq", "/console/playground"):
        resp = consumer.page(path)
        assert resp.status_code == 403
        assert resp.headers["content-type"].startswith("text/html")
        assert "cannot open the console" in resp.text
    refused = consumer.post("/console/prompts", {"spec": "name: x\nmessages: [{role: user, content: hi}]"})
    assert refused.status_code == 403
    with running.client() as admin:
        assert "x" not in {p["name"] for p in admin.get("/api/prompts").json()}


def test_a_post_without_the_csrf_token_changes_nothing(running: RunningServer, engineer: Web) -> None:
    spec = "name: faq\nmodel: " + MODEL + "\nmessages:\n  - role: user\n    content: changed\n"
    for csrf, htmx in ((False, True), (False, False)):
        resp = engineer.post("/console/prompts", {"spec": spec}, csrf=csrf, htmx=htmx)
        assert resp.status_code == 403
        assert "reload the page" in resp.text
    forged = engineer.http.post("/console/prompts/faq/labels", data={"label": "x", "version": "1"},
                                headers={"X-CSRF-Token": "forged"})  # fmt: skip
    assert forged.status_code == 403
    with running.client() as admin:
        assert admin.get("/api/prompts/faq/versions").json()[0]["version"] == 1
        assert "x" not in admin.get("/api/prompts/faq").json()["labels"]


def test_bad_input_is_a_4xx_fragment_that_says_what_to_fix(engineer: Web) -> None:
    cases = [
        ("/console/prompts", {"spec": "name: faq\nmessages: [\n  - oops"}, 400, "line 3, column"),
        ("/console/prompts", {"spec": "name: Bad Name\nmessages: []"}, 400, "name"),
        ("/console/prompts", {"spec": ""}, 400, "the prompt YAML is empty"),
        ("/console/prompts/faq/labels", {"label": "latest", "version": "1"}, 400, "reserved"),
        ("/console/prompts/faq/labels", {"label": "qa", "version": "9"}, 404, "no version 9"),
        ("/console/models", {"alias": "bad alias!", "provider": "openai", "model": "m"}, 400, "alias"),
        ("/console/models", {"alias": "m2", "provider": "nope", "model": "m"}, 400, "unknown provider"),
        ("/console/models", {"alias": MODEL, "provider": "openai", "model": "m"}, 409, "built-in"),
        ("/console/models/test", {"model": "ghost", "prompt": "hi"}, 400, "does not exist"),
        ("/console/models/test", {"model": MODEL, "prompt": "hi", "max_tokens": "x"}, 400, "max_tokens"),
        ("/console/playground/run", {"message": "hi"}, 400, "choose a prompt"),
        ("/console/playground/run", {"prompt": "faq", "versions": "7"}, 400, "no version 7"),
    ]
    for path, data, status, text in cases:
        resp = engineer.post(path, data)
        assert resp.status_code == status, (path, data, resp.text)
        assert resp.headers["hx-retarget"] == "#flash"
        assert 'class="flash error"' in resp.text
        assert text in resp.text, (path, resp.text)
        assert "<html" not in resp.text  # a fragment, not a page
    missing = engineer.page("/console/prompts/ghost")
    assert missing.status_code == 404
    assert "no prompt 'ghost'" in missing.text.replace("&#39;", "'")
    assert engineer.page("/console/playground?trace_id=0123abcd").status_code == 404


def test_prompt_actions_then_a_model_test_and_its_trace_in_the_playground(
    running: RunningServer, engineer: Web
) -> None:
    spec = engineer.page("/console/prompts/faq").text
    assert "labels:" not in spec.split('data-testid="prompt-yaml">')[1].split("</textarea>")[0]
    yaml = "name: faq\nmodel: " + MODEL + "\nmessages:\n  - role: user\n    content: 'About {{ topic }}'\n"
    pushed = engineer.post("/console/prompts", {"spec": yaml, "message": "shorter"})
    assert pushed.status_code == 200
    assert pushed.headers["hx-redirect"] == "/console/prompts/faq?pushed=2"
    again = engineer.post("/console/prompts", {"spec": yaml})
    assert again.headers["hx-redirect"] == "/console/prompts/faq?unchanged=2"
    diff = engineer.http.get("/console/prompts/faq/diff", params={"a": "1", "b": "2"}, headers=HTMX)
    assert '<span class="add">+  content: About {{ topic }}</span>' in diff.text.replace("&#39;", "'")
    moved = engineer.post("/console/prompts/faq/labels", {"label": "production", "version": "2"})
    assert moved.status_code == 200
    assert "Label production now points at version 2" in moved.text
    assert 'hx-swap-oob="innerHTML"' in moved.text
    unlabelled = engineer.http.delete(
        "/console/prompts/faq/labels/production", headers={**HTMX, "X-CSRF-Token": engineer.csrf}
    )
    assert unlabelled.status_code == 200
    assert "Removed label production" in unlabelled.text
    with running.client() as admin:
        versions = admin.get("/api/prompts/faq/versions").json()
        assert [(v["version"], v["author"], v["message"], v["labels"]) for v in versions] == [
            (2, "eng", "shorter", []),
            (1, "admin", None, []),
        ]

    added = engineer.post("/console/models", {"alias": "remote", "provider": "openai", "model": "gpt-x",
                                              "input_price": "2.5", "capabilities": "tools"})  # fmt: skip
    assert added.status_code == 200
    assert "Added model remote" in added.text
    with running.client() as admin:
        model = admin.get("/api/models/remote").json()
        assert (model["input_price"], model["capabilities"]) == (2.5, {"tools": True})

    tested = engineer.post("/console/models/test", {"model": MODEL, "prompt": "Say hi", "max_tokens": "6"})
    assert tested.status_code == 200, tested.text
    assert '<pre class="output">' in tested.text
    tokens = re.search(r'data-stat="tokens">(\d+) / (\d+)<', tested.text)
    assert tokens
    assert int(tokens.group(1)) > 0
    assert 0 < int(tokens.group(2)) <= 6
    trace_id = re.search(r'href="/console/traces/([0-9a-f]+)"', tested.text)
    assert trace_id
    deadline = time.monotonic() + 10
    while (
        prefilled := engineer.page(f"/console/playground?trace_id={trace_id.group(1)}")
    ).status_code == 404:
        assert time.monotonic() < deadline, "the test call's trace was never stored"
        time.sleep(0.1)
    assert prefilled.status_code == 200
    assert ">Say hi</textarea>" in prefilled.text
    assert f'value="{MODEL}" checked' in prefilled.text


def test_an_endpoint_call_opens_in_the_playground_with_its_input(
    running: RunningServer, engineer: Web
) -> None:
    """The traces explorer's "open in playground": the prompt version, variables and message come back."""
    with running.client() as admin:
        made = admin.post("/api/endpoints", json={"name": "faq-bot", "prompt": "faq", "version": 1})
        assert made.status_code == 201, made.text
        called = admin.post(
            "/v1/chat/completions",
            json={
                "model": "faq-bot",
                "messages": [{"role": "user", "content": "And <b>returns</b>?"}],
                "variables": {"topic": "refunds"},
                "max_tokens": 4,
            },
        )
        assert called.status_code == 200, called.text
    opened = f"/console/playground?trace_id={called.headers['x-fmops-trace-id']}"
    deadline = time.monotonic() + 10
    while (page := engineer.page(opened)).status_code == 404:
        assert time.monotonic() < deadline, "the call's trace was never stored"
        time.sleep(0.1)
    assert page.status_code == 200
    assert '<option value="faq" selected>faq</option>' in page.text
    assert re.search(r'name="versions" value="1" checked', page.text)
    assert 'name="var.topic" value="refunds"' in page.text
    assert ">And &lt;b&gt;returns&lt;/b&gt;?</textarea>" in page.text  # only what the caller sent
