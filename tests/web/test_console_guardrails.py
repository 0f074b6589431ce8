"""The guardrails page over plain HTTP (no browser), on a real server: the installed checks and the
project's policies, policies added, applied from YAML and deleted (with HTMX and as plain forms), bad
input shown as one message naming each field, roles and the CSRF token enforced, text escaped."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.browser import create_user_key, web_session
from support.server import RunningServer, start_server

MODEL = "smollm2-135m-instruct"
HTMX = {"HX-Request": "true"}
XSS = "<script>alert(1)</script>"


class Web:
    def __init__(self, server: RunningServer, key: str) -> None:
        self.http, self.csrf = web_session(server, key)

    def post(
        self, path: str, data: dict[str, str], *, htmx: bool = True, csrf: bool = True
    ) -> httpx.Response:
        headers = dict(HTMX) if htmx else {}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return self.http.post(path, data=data, headers=headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("guardrails-web"), {"FMOPS_WORKERS": "0"}) as running:
        with running.client() as admin:
            made = admin.post("/api/endpoints", json={"name": "triage", "model": MODEL})
            assert made.status_code == 201, made.text
        yield running


@pytest.fixture(scope="module")
def engineer(server: RunningServer) -> Iterator[Web]:
    web = Web(server, create_user_key(server, "eng", "engineer"))
    yield web
    web.http.close()


def policies(server: RunningServer) -> list[dict[str, Any]]:
    with server.client() as admin:
        found: list[dict[str, Any]] = admin.get("/api/policies").json()
        return found


def test_the_page_lists_guardrails_and_policies(server: RunningServer, engineer: Web) -> None:
    page = engineer.http.get("/console/guardrails")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for text in (
        "Installed guardrails",
        ">pii<",
        ">secrets<",
        "redact, mask",
        "No policies yet",
        "Add policy",
    ):
        assert text in html, text
    assert '<option value="triage">endpoint</option>' in html  # targets offered for the form
    assert f'<option value="{MODEL}">model</option>' in html
    assert ">Guardrails</a>" in engineer.http.get("/console").text  # in the navigation


def test_add_apply_and_delete_policies(server: RunningServer, engineer: Web) -> None:
    added = engineer.post(
        "/console/guardrails",
        {"name": "no-pii", "guardrail": "pii", "scope": "project", "on": "input", "action": "redact",
         "on_error": "closed", "config": '{"types": ["email"]}', "enabled": "on"},
    )  # fmt: skip
    assert added.status_code == 200, added.text
    assert "Added the policy no-pii." in added.text
    assert 'data-policy="no-pii"' in added.text
    # A plain form (no JavaScript) goes back to the page.
    plain = engineer.post(
        "/console/guardrails",
        {"name": "keys", "guardrail": "secrets", "scope": "endpoint", "target": "triage", "on": "both",
         "action": "block", "on_error": "open"},
        htmx=False,
    )  # fmt: skip
    assert (plain.status_code, plain.headers["location"]) == (303, "/console/guardrails")
    stored = {p["label"]: p for p in policies(server)}
    assert set(stored) == {"no-pii", "endpoint:triage/keys"}
    assert (stored["no-pii"]["config"], stored["no-pii"]["created_by"]) == ({"types": ["email"]}, "eng")
    assert (stored["endpoint:triage/keys"]["enabled"], stored["endpoint:triage/keys"]["on_error"]) == (
        False,
        "open",
    )

    yaml = (
        "- {name: no-pii, guardrail: pii, on: both, action: mask}\n"
        f"- {{name: leak, guardrail: regex, on: output, config: {{patterns: ['{XSS}']}}}}\n"
    )
    applied = engineer.post("/console/guardrails/apply", {"spec": yaml})
    assert applied.status_code == 200, applied.text
    assert "Applied 2 policies: 1 created, 1 updated." in applied.text
    assert XSS not in applied.text  # the config is shown escaped
    assert "&lt;script&gt;" in applied.text
    assert {p["label"]: p["action"] for p in policies(server)}["no-pii"] == "mask"

    off = engineer.post(
        "/console/guardrails/enabled", {"scope": "project", "name": "no-pii", "enabled": "false"}
    )
    assert "The policy no-pii is off: calls no longer run it." in off.text
    assert 'value="true">' in off.text  # its button now turns it back on
    assert {p["label"]: p["enabled"] for p in policies(server)}["no-pii"] is False
    on = engineer.post(
        "/console/guardrails/enabled", {"scope": "project", "name": "no-pii", "enabled": "true"}
    )
    assert "The policy no-pii runs again." in on.text
    # A policy outlives its endpoint (and applies again to one re-created under the name): marked gone.
    with server.client() as admin:
        assert admin.delete("/api/endpoints/triage").status_code == 200
        assert 'data-testid="gone"' in engineer.http.get("/console/guardrails").text
        assert admin.post("/api/endpoints", json={"name": "triage", "model": MODEL}).status_code == 201
    assert 'data-testid="gone"' not in engineer.http.get("/console/guardrails").text
    deleted = engineer.post(
        "/console/guardrails/delete", {"scope": "endpoint", "target": "triage", "name": "keys"}
    )
    assert "Deleted the policy endpoint:triage/keys." in deleted.text
    assert sorted(p["label"] for p in policies(server)) == ["leak", "no-pii"]
    for name in ("leak", "no-pii"):
        engineer.post("/console/guardrails/delete", {"scope": "project", "name": name})
    assert policies(server) == []


@pytest.mark.parametrize(
    ("form", "fragments"),
    [
        ({"name": "x", "guardrail": "nope"}, ["unknown guardrail 'nope'", "known guardrails"]),
        (
            {"name": "x", "guardrail": "pii", "config": '{"types": [], "extra": 1}'},
            ["config.types", "config.extra"],
        ),
        ({"name": "x", "guardrail": "pii", "config": "{types"}, ["config is not valid JSON"]),
        (
            {"name": "x", "guardrail": "pii", "scope": "model", "target": "gone"},
            ["model 'gone' does not exist"],
        ),
        ({"name": "x", "guardrail": "length", "action": "redact"}, ["redact needs the spans"]),
        ({"name": "bad name", "guardrail": "pii"}, ["name: String should match pattern"]),
    ],
)
def test_bad_input_is_one_message_naming_each_field(
    server: RunningServer, engineer: Web, form: dict[str, str], fragments: list[str]
) -> None:
    refused = engineer.post("/console/guardrails", form)
    assert refused.status_code == 400, refused.text
    assert refused.headers.get("hx-retarget") == "#flash"  # the message replaces the page's flash
    for fragment in fragments:
        assert fragment in html.unescape(refused.text)
    assert policies(server) == []


def test_bad_yaml_and_missing_policies_are_refused(server: RunningServer, engineer: Web) -> None:
    bad = engineer.post(
        "/console/guardrails/apply", {"spec": "- {name: a, guardrail: pii, on: up}\n- {x: 1}\n"}
    )
    assert bad.status_code == 400
    assert "policies.0.on" in bad.text
    assert "policies.1.name" in bad.text
    gone = engineer.post("/console/guardrails/delete", {"scope": "project", "name": "nope"})
    assert gone.status_code == 404
    assert "no policy named" in gone.text


def test_consumers_and_forged_posts_change_nothing(server: RunningServer, engineer: Web) -> None:
    consumer = Web(server, create_user_key(server, "cy", "consumer"))
    page = consumer.http.get("/console/guardrails")
    assert page.status_code == 403
    assert "cannot open the console" in page.text
    form = {"name": "sneaky", "guardrail": "pii"}
    assert consumer.post("/console/guardrails", form).status_code == 403
    assert engineer.post("/console/guardrails", form, csrf=False).status_code == 403
    assert policies(server) == []
    consumer.http.close()
