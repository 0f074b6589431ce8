"""Guardrails and policies over HTTP on a real server, on both backends: the installed checks, policies
attached to the project, a model (an alias with a "/") and an endpoint, replaced with PUT, applied as a
list, and bad policies refused with one 400 naming each field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.databases import postgres_database
from support.gateway import add_models, gateway_server, openai_model
from support.server import RunningServer

MODEL = "org/chat"  # an alias with a slash: the policy's path keeps it whole


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp(f"guardrails-{request.param}")
    models = {MODEL: openai_model("upstream", "http://127.0.0.1:9/v1")}
    if request.param == "sqlite":
        with gateway_server(home) as running:
            add_models(home, models)
            yield running
    else:
        with postgres_database() as url, gateway_server(home, {"FMOPS_DATABASE_URL": url}) as running:
            (home / "fmops.toml").write_text(f'database_url = "{url}"\n')  # for `fmops models add`
            add_models(home, models)
            yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        created = client.post("/api/endpoints", json={"name": "triage", "model": MODEL})
        assert created.status_code == 201, created.text
        yield client


def error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    found: dict[str, Any] = resp.json()["error"]
    return found


def test_installed_guardrails_say_where_they_run_and_what_they_find(admin: httpx.Client) -> None:
    resp = admin.get("/api/guardrails")
    assert resp.status_code == 200, resp.text
    listed = {g["name"]: g for g in resp.json()}
    assert {"pii", "secrets", "regex", "length", "json_schema", "system_prompt_leak"} <= set(listed)
    assert (listed["pii"]["stages"], listed["pii"]["spans"]) == (["input", "output"], True)
    assert listed["json_schema"]["stages"] == ["output"]
    assert "types" in listed["pii"]["config_schema"]["properties"]


def test_policies_on_the_project_a_model_and_an_endpoint(admin: httpx.Client) -> None:
    pii = {
        "name": "no-pii",
        "guardrail": "pii",
        "on": "input",
        "action": "redact",
        "config": {"types": ["email"]},
    }
    made = admin.post("/api/policies", json=pii)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["scope"], body["target"], body["label"], body["on_error"], body["enabled"]) == (
        "project",
        "",
        "no-pii",
        "closed",
        True,
    )
    assert "fmops guardrails apply" in error(admin.post("/api/policies", json=pii), 409)["message"]

    on_model = {"name": "no-secrets", "guardrail": "secrets", "on": "both", "scope": "model", "target": MODEL}
    assert admin.post("/api/policies", json=on_model).status_code == 201
    on_endpoint = {"name": "no-pii", "guardrail": "length", "on": "output", "config": {"max_chars": 2000}}
    assert (
        admin.post("/api/policies", json={**on_endpoint, "scope": "endpoint", "target": "triage"}).status_code
        == 201
    )

    listed = admin.get("/api/policies").json()
    assert [p["label"] for p in listed] == ["no-pii", f"model:{MODEL}/no-secrets", "endpoint:triage/no-pii"]
    assert [p["name"] for p in admin.get("/api/policies", params={"scope": "model"}).json()] == ["no-secrets"]
    assert [p["scope"] for p in admin.get("/api/policies", params={"target": "triage"}).json()] == [
        "endpoint"
    ]

    one = admin.get(f"/api/policies/model/{MODEL}/no-secrets")
    assert one.status_code == 200, one.text
    assert (one.json()["target"], one.json()["on"]) == (MODEL, "both")
    assert admin.get("/api/policies/project/_/no-pii").json()["config"] == {"types": ["email"]}

    # PUT: replace (or create); the answer says what changed.
    flagged = {**on_endpoint, "action": "flag"}
    put = admin.put("/api/policies/endpoint/triage/no-pii", json=flagged)
    assert (put.status_code, put.json()["change"], put.json()["policy"]["action"]) == (200, "updated", "flag")
    assert admin.put("/api/policies/endpoint/triage/no-pii", json=flagged).json()["change"] == "unchanged"
    fresh = admin.put("/api/policies/project/_/max-len", json={**on_endpoint, "name": "max-len"})
    assert fresh.json()["change"] == "created"
    mismatch = error(admin.put("/api/policies/project/_/other", json=flagged), 400)
    assert (mismatch["param"], "must agree" in mismatch["message"]) == ("name", True)

    deleted = admin.delete(f"/api/policies/model/{MODEL}/no-secrets")
    assert (deleted.status_code, deleted.json()["name"]) == (200, "no-secrets")
    assert (
        "no policy named 'no-secrets'"
        in error(admin.get(f"/api/policies/model/{MODEL}/no-secrets"), 404)["message"]
    )
    for label in ("project/_/no-pii", "project/_/max-len", "endpoint/triage/no-pii"):
        assert admin.delete(f"/api/policies/{label}").status_code == 200


def test_apply_creates_replaces_and_is_idempotent(admin: httpx.Client) -> None:
    policies = [
        {"name": "keys", "guardrail": "secrets", "on": "both", "action": "block"},
        {
            "name": "short",
            "guardrail": "length",
            "scope": "endpoint",
            "target": "triage",
            "config": {"max_chars": 500},
        },
    ]
    first = admin.post("/api/policies/apply", json={"policies": policies})
    assert first.status_code == 200, first.text
    assert [(d["change"], d["policy"]["label"]) for d in first.json()] == [
        ("created", "keys"),
        ("created", "endpoint:triage/short"),
    ]
    assert [d["change"] for d in admin.post("/api/policies/apply", json={"policies": policies}).json()] == [
        "unchanged"
    ] * 2
    policies[0]["on_error"] = "open"
    assert [d["change"] for d in admin.post("/api/policies/apply", json={"policies": policies}).json()] == [
        "updated",
        "unchanged",
    ]

    # One bad policy: none applied, every fault named with its place in the list.
    bad = [
        {**policies[0], "on_error": "closed"},
        {"name": "x", "guardrail": "pii", "config": {"types": [], "nope": 1}},
    ]
    refused = error(admin.post("/api/policies/apply", json={"policies": bad}), 400)
    assert "policies.1.config.types" in refused["message"]
    assert "policies.1.config.nope" in refused["message"]
    assert admin.get("/api/policies/project/_/keys").json()["on_error"] == "open"
    for label in ("project/_/keys", "endpoint/triage/short"):
        assert admin.delete(f"/api/policies/{label}").status_code == 200


@pytest.mark.parametrize(
    ("body", "param", "fragments"),
    [
        (
            {"name": "x", "guardrail": "nope"},
            "guardrail",
            ["unknown guardrail 'nope'", "known guardrails: ", "pii"],
        ),
        (
            {"name": "x", "guardrail": "pii", "config": {"types": ["email", "shoe-size"], "extra": True}},
            "config.types",
            ["config.types: ", "shoe-size", "config.extra: "],
        ),
        (
            {"name": "x", "guardrail": "pii", "scope": "endpoint", "target": "nowhere"},
            "target",
            ["endpoint 'nowhere' does not exist", "known: triage"],
        ),
        (
            {"name": "x", "guardrail": "pii", "scope": "model", "target": "gone"},
            "target",
            ["model 'gone' does not exist"],
        ),
        ({"name": "x", "guardrail": "length", "action": "redact"}, "action", ["redact needs the spans"]),
        ({"name": "x", "guardrail": "pii", "action": "retry"}, "action", ["set `on: output`"]),
        (
            {"name": "x", "guardrail": "json_schema", "on": "input", "config": {"schema": {}}},
            "on",
            ["cannot check the input"],
        ),
        ({"name": "x", "guardrail": "pii", "target": "triage"}, "target", ["a project policy has no target"]),
        ({"name": "x", "guardrail": "pii", "on": "sideways", "action": "explode"}, "on", ["on", "action"]),
        (
            {
                "name": "x",
                "guardrail": "judge",
                "on": "output",
                "config": {"model": "gone", "prompt": "no-such-judge@production"},
            },
            "config.model",  # the first of the two
            [
                "config.model: 'gone' is neither a model nor an endpoint",
                "config.prompt: judge prompt 'no-such-judge@production': ",
                "no prompt 'no-such-judge' in this project",
            ],
        ),
    ],
)
def test_a_bad_policy_is_one_400_naming_each_field(
    admin: httpx.Client, body: dict[str, Any], param: str | None, fragments: list[str]
) -> None:
    found = error(admin.post("/api/policies", json=body), 400)
    for fragment in fragments:
        assert fragment in found["message"]
    if param is not None:
        assert found["param"] == param
    assert admin.get("/api/policies").json() == []
