"""The prompt registry over HTTP on a real server, on both backends: push (JSON and YAML), read by
version and label, render, diff, move labels, export; roles and projects; bad input named."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from support.databases import postgres_database
from support.server import RunningServer, start_server

SPEC: dict[str, Any] = {
    "name": "support",
    "description": "Answers support questions",
    "params": {"temperature": 0.2},
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}. Be brief."},
        {"role": "user", "content": "{{ question }}"},
    ],
}
YAML_V2 = """\
name: support
params: {temperature: 0.5}
messages:
  - role: system
    content: |-
      You answer for {{ company }}.
      Be very brief.
  - {role: user, content: "{{ question }}"}
message: two lines
labels: [staging]
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A real server on each backend; no job workers (prompts need none, and they slow the start)."""
    home = tmp_path_factory.mktemp(f"prompts-{request.param}")
    env = {"FMOPS_WORKERS": "0"}
    if request.param == "sqlite":
        with start_server(home, env) as running:
            yield running
    else:
        with postgres_database() as url, start_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def key(admin: httpx.Client, **body: Any) -> str:
    response = admin.post("/api/keys", json={"name": f"k-{uuid.uuid4().hex[:8]}", **body})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_push_read_render_label_diff_export(admin: httpx.Client) -> None:
    first = admin.post("/api/prompts", json=SPEC)
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["created"], first.json()["author"]) == (1, True, "admin")
    assert first.json()["variables"] == ["company", "question"]
    again = admin.post("/api/prompts", json={**SPEC, "message": "same content"})
    assert (again.status_code, again.json()["version"], again.json()["created"]) == (200, 1, False)

    second = admin.post("/api/prompts", content=YAML_V2, headers={"Content-Type": "application/yaml"})
    assert second.status_code == 201, second.text
    assert (second.json()["version"], second.json()["labels"], second.json()["message"]) == (
        2,
        ["staging"],
        "two lines",
    )
    moved = admin.put("/api/prompts/support/labels/production", json={"version": 1})
    assert (moved.status_code, moved.json()["labels"]) == (200, ["production"])
    assert admin.get("/api/prompts/support", params={"label": "production"}).json()["version"] == 1
    assert admin.get("/api/prompts/support", params={"version": 2}).json()["labels"] == ["staging"]
    assert admin.get("/api/prompts/support").json()["version"] == 2

    rendered = admin.post(
        "/api/prompts/support/render",
        json={"label": "staging", "variables": {"company": "Acme", "question": "{{ 7*7 }}?"}},
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["messages"] == [
        {"role": "system", "content": "You answer for Acme.\nBe very brief."},
        {"role": "user", "content": "{{ 7*7 }}?"},
    ]
    assert rendered.json()["params"] == {"temperature": 0.5}
    missing = admin.post("/api/prompts/support/render", json={"variables": {"company": "Acme"}})
    assert missing.status_code == 400
    assert missing.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "variables",
        "code": "missing_variables",
    }
    assert missing.json()["error"]["message"] == "missing variables: question"

    diff = admin.get("/api/prompts/support/diff", params={"a": "production", "b": "staging"}).json()
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    assert "-  temperature: 0.2\n+  temperature: 0.5\n" in diff["diff"]
    assert [v["version"] for v in admin.get("/api/prompts/support/versions").json()] == [2, 1]
    [listed] = [p for p in admin.get("/api/prompts").json() if p["name"] == "support"]
    assert (listed["latest_version"], listed["labels"]) == (2, {"production": 1, "staging": 2})

    exported = admin.get("/api/export/prompts", params={"name": "support"})
    assert exported.headers["content-type"].startswith("application/yaml")
    assert exported.headers["content-disposition"] == 'attachment; filename="support.yaml"'
    document = yaml.safe_load(exported.text)
    assert document["messages"][0]["content"] == "You answer for {{ company }}.\nBe very brief."
    assert document["labels"] == ["staging"]
    everything = yaml.safe_load(admin.get("/api/export/prompts").text)
    assert [p["name"] for p in everything] == ["support"]  # a list: every prompt of the project
    # The export pushed back is the same version.
    same = admin.post("/api/prompts", content=exported.text, headers={"Content-Type": "application/yaml"})
    assert (same.status_code, same.json()["version"]) == (200, 2)

    assert admin.delete("/api/prompts/support/labels/staging").status_code == 204
    gone = admin.get("/api/prompts/support", params={"label": "staging"})
    assert gone.status_code == 404
    assert gone.json()["error"]["message"] == "no label 'staging' on prompt 'support'; labels: production"
    deleted = admin.delete("/api/prompts/support")
    assert (deleted.status_code, deleted.json()["latest_version"]) == (200, 2)
    assert admin.get("/api/prompts/support").status_code == 404


def test_consumers_read_engineers_write_and_projects_are_apart(
    server: RunningServer, admin: httpx.Client
) -> None:
    assert admin.post("/api/prompts", json={**SPEC, "name": "shared"}).status_code == 201
    with server.client(key(admin, role="consumer")) as consumer:
        assert consumer.get("/api/prompts/shared").status_code == 200
        rendered = consumer.post(
            "/api/prompts/shared/render", json={"variables": {"company": "A", "question": "?"}}
        )
        assert rendered.status_code == 200, rendered.text
        for method, path, body in [
            ("POST", "/api/prompts", {**SPEC, "name": "sneaky"}),
            ("PUT", "/api/prompts/shared/labels/production", {"version": 1}),
            ("DELETE", "/api/prompts/shared", None),
        ]:
            response = consumer.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)

    other = f"other-{uuid.uuid4().hex[:8]}"
    assert admin.post("/api/projects", json={"name": other}).status_code == 201
    with server.client(key(admin, project=other, role="admin")) as outsider:
        assert [p["name"] for p in outsider.get("/api/prompts").json()] == []
        for method, path, body in [
            ("GET", "/api/prompts/shared", None),
            ("POST", "/api/prompts/shared/render", {"variables": {}}),
            ("PUT", "/api/prompts/shared/labels/production", {"version": 1}),
            ("DELETE", "/api/prompts/shared", None),
            ("GET", "/api/export/prompts?name=shared", None),
        ]:
            response = outsider.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
        assert outsider.get("/api/export/prompts").text == "[]\n"
    assert admin.get("/api/prompts/shared").json()["labels"] == []  # the outsider's PUT changed nothing


YAML = {"Content-Type": "application/yaml"}
BAD: list[tuple[str, str, dict[str, Any], int, str | None, str]] = [
    # method, path, request kwargs, status, param, fragment of the message
    (
        "POST",
        "/api/prompts",
        {"json": {**SPEC, "messages": [{"role": "user", "content": "Hi {{ x }"}]}},
        400,
        "messages[0].content",
        "does not parse at line 1, column 4",
    ),
    (
        "POST",
        "/api/prompts",
        {"json": {**SPEC, "output_schema": {"type": 7}}},
        400,
        "output_schema",
        "not a valid JSON Schema",
    ),
    (
        "POST",
        "/api/prompts",
        {"json": {**SPEC, "params": {"tempreature": 1}}},
        400,
        "params.tempreature",
        "not an OpenAI chat parameter",
    ),
    (
        "POST",
        "/api/prompts",
        {"json": {**SPEC, "model": "nope"}},
        400,
        "model",
        "model 'nope' does not exist",
    ),
    ("POST", "/api/prompts", {"json": {**SPEC, "labels": ["latest"]}}, 400, "labels", "reserved"),
    ("POST", "/api/prompts", {"json": {**SPEC, "name": "Bad Name"}}, 400, "name", "should match pattern"),
    (
        "POST",
        "/api/prompts",
        {"content": "name: x\nmessages: [", "headers": YAML},
        400,
        "body",
        "not valid YAML at line",
    ),
    ("POST", "/api/prompts", {"content": "a: &a [1]\nb: *a\n", "headers": YAML}, 400, "body", "aliases"),
    (
        "POST",
        "/api/prompts",
        {"content": "name: a\n---\nname: b\n", "headers": YAML},
        400,
        "body",
        "not 2 YAML",
    ),
    ("PUT", "/api/prompts/bad/labels/latest", {"json": {"version": 1}}, 400, "label", "reserved"),
    ("PUT", "/api/prompts/bad/labels/12", {"json": {"version": 1}}, 400, "label", "would read as a version"),
    (
        "PUT",
        "/api/prompts/bad/labels/x",
        {"json": {"version": 0}},
        400,
        "version",
        "greater than or equal to 1",
    ),
    (
        "PUT",
        "/api/prompts/bad/labels/x",
        {"json": {"version": 9}},
        404,
        "version",
        "no version 9 of prompt 'bad'",
    ),
    ("GET", "/api/prompts/bad?version=1&label=x", {}, 400, "label", "not both"),
    ("GET", "/api/prompts/bad?label=prod", {}, 404, "label", "no label 'prod' on prompt 'bad'; labels: none"),
    ("GET", "/api/prompts/nope", {}, 404, "name", "no prompt 'nope' in this project; prompts: "),
    ("GET", "/api/prompts/bad/diff?a=1&b=3", {}, 404, "version", "versions: 1 to 1"),
    (
        "POST",
        "/api/prompts/bad/render",
        {"json": {"variables": {"x": 1}, "versoin": 1}},
        400,
        "versoin",
        "Extra inputs",
    ),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "param", "fragment"), BAD)
def test_bad_input_is_refused_naming_the_field(
    admin: httpx.Client,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    param: str | None,
    fragment: str,
) -> None:
    if admin.get("/api/prompts/bad").status_code == 404:
        admin.post("/api/prompts", json={**SPEC, "name": "bad"}).raise_for_status()
    response = admin.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert fragment in error["message"], error
