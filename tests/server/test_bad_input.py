"""Bad input over real HTTP: a clear 4xx that names the problem, in OpenAI's error shape, never a 500."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support.server import RunningServer, start_server

LIMIT = 2048
ERROR_KEYS = {"message", "type", "param", "code"}


def error_of(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    return error


def body_operations(server: RunningServer) -> list[tuple[str, str, bool]]:
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    ops = [
        (method.upper(), re.sub(r"\{[^}]+\}", "0" * 32, path), bool(op["requestBody"].get("required")))
        for path, item in schema["paths"].items()
        for method, op in item.items()
        # multipart routes (a dataset upload) are refused by their own content type, tested with them
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert len(ops) >= 6
    return ops


@pytest.fixture(scope="module")
def api(sqlite_server: RunningServer) -> Iterator[httpx.Client]:
    with sqlite_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("small-limit-home")
    with start_server(home, {"FMOPS_MAX_BODY_BYTES": str(LIMIT), "FMOPS_WORKERS": "0"}) as running:
        yield running


# --- bodies that are not JSON objects -------------------------------------------------------------


# Each body, and the words any route's message must contain one of (routes parse in different ways:
# FastAPI's decoder, or the gateway's own fast path; both must say what is wrong with the body).
NOT_JSON = ("not valid JSON", "could not be parsed")
RAW_BODIES = [
    pytest.param(b'{"kind": ', NOT_JSON, id="truncated"),
    pytest.param(b"{'kind': 'test.count'}", NOT_JSON, id="single-quotes"),
    pytest.param(b'{"kind": "a",}', NOT_JSON, id="trailing-comma"),
    pytest.param(b'{"kind": "\xff\xfe"}', ("UTF-8", "unicode"), id="bad-utf8"),
    pytest.param(b'{"name": "caf\xc3"}', ("UTF-8", "unicode"), id="truncated-utf8"),
    pytest.param(b"\xef\xbb\xbf\x00\x00", (*NOT_JSON, "UTF-8"), id="bom-and-nul"),
    pytest.param(b"[1, 2]", ("must be a JSON object", "valid dictionary"), id="array"),
    pytest.param(b'"text"', ("must be a JSON object", "valid dictionary"), id="string"),
    pytest.param(b"", ("missing", "EOF"), id="empty"),
]


@pytest.mark.parametrize(("raw", "mentions"), RAW_BODIES)
def test_every_body_route_refuses_a_body_that_is_not_a_json_object(
    sqlite_server: RunningServer, api: httpx.Client, raw: bytes, mentions: tuple[str, ...]
) -> None:
    for method, path, required in body_operations(sqlite_server):
        if not raw and not required:
            continue  # an optional body may be left out: the route answers as without one
        response = api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
        error = error_of(response, 400)
        assert any(m in error["message"] for m in mentions), (method, path, error)
        assert "body" in error["message"] or error["param"] is None, (method, path, error)


def test_non_json_content_type_is_named(api: httpx.Client) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = api.post(
            "/api/jobs", content=b'{"kind": "test.count"}', headers={"Content-Type": content_type}
        )
        error = error_of(response, 400)
        assert "Content-Type: application/json" in error["message"], (content_type, error)


# --- well-formed JSON with the wrong content ------------------------------------------------------


WRONG = [
    ("POST", "/api/jobs", {"kind": 5}, "kind"),
    ("POST", "/api/jobs", {"kind": ""}, "kind"),
    ("POST", "/api/jobs", {"kind": "test.count", "params": [1]}, "params"),
    ("POST", "/api/jobs", {"kind": "test.count", "params": {"steps": "ten"}}, "params"),
    ("POST", "/api/jobs", {"params": {}}, "kind"),
    ("POST", "/api/keys", {"name": "k", "role": "root"}, "role"),
    ("POST", "/api/keys", {"name": "k", "expires_at": "tomorrow"}, "expires_at"),
    ("POST", "/api/keys", {"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ("POST", "/api/keys", {"name": ""}, "name"),
    ("POST", "/api/keys", {"name": "x" * 101}, "name"),
    ("POST", "/api/keys", {"name": "tab\there"}, "name"),
    ("POST", "/api/projects", {"name": "has space"}, "name"),
    ("POST", "/api/projects", {"name": "-starts-with-dash"}, "name"),
    ("POST", "/api/projects", {"name": ["list"]}, "name"),
    ("POST", "/api/users", {"name": "u1", "email": "no-at-sign"}, "email"),
    ("POST", "/api/users", {"name": "u1", "role": "owner"}, "role"),
    ("PATCH", "/api/projects/current", {"retention_days": 0}, "retention_days"),
    ("PATCH", "/api/projects/current", {"retention_days": "30"}, "retention_days"),
    ("PATCH", "/api/projects/current", {"retention_days": True}, "retention_days"),
    ("PATCH", "/api/projects/current", {"retention_days": 1.5}, "retention_days"),
    ("PATCH", "/api/users/" + "0" * 32, {"disabled": "yes"}, "disabled"),
    ("PATCH", "/api/users/" + "0" * 32, {"disabled": 1}, "disabled"),
]


@pytest.mark.parametrize(("method", "path", "body", "param"), WRONG, ids=lambda v: str(v)[:40])
def test_wrong_types_and_values_name_the_field(
    api: httpx.Client, method: str, path: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(api.request(method, path, json=body), 400)
    assert error["param"] == param, error
    assert param in error["message"], error


def test_a_refused_retention_change_changes_nothing(api: httpx.Client) -> None:
    assert api.patch("/api/projects/current", json={"retention_days": 30}).status_code == 200
    error_of(api.patch("/api/projects/current", json={"retention_days": True}), 400)
    project = api.get("/api/projects").json()[0]
    assert project["retention_days"] == 30, "`true` was not read as 1 day"


UNKNOWN_FIELDS = [
    ("POST", "/api/jobs", {"kind": "test.count", "prams": {}}, "prams"),
    ("POST", "/api/keys", {"name": "k", "rolee": "admin"}, "rolee"),
    ("POST", "/api/projects", {"name": "p", "owner": "me"}, "owner"),
    ("POST", "/api/users", {"name": "u", "password": "hunter2"}, "password"),
    ("PATCH", "/api/projects/current", {"retention": 3}, "retention"),
    ("PATCH", "/api/users/" + "0" * 32, {"admin": True}, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), UNKNOWN_FIELDS, ids=lambda v: str(v)[:30])
def test_unknown_fields_are_named(
    api: httpx.Client, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    error = error_of(api.request(method, path, json=body), 400)
    assert error["param"] == field
    assert f"{field}: Extra inputs are not permitted" in error["message"]


def test_nothing_was_created_by_refused_requests(api: httpx.Client) -> None:
    names = [p["name"] for p in api.get("/api/projects").json()]
    assert names == ["default"]
    users = [u["name"] for u in api.get("/api/users").json()]
    assert users == ["admin"]


def test_numbers_json_cannot_hold(api: httpx.Client) -> None:
    for raw in (
        b'{"kind": "test.count", "params": {"steps": NaN}}',
        b'{"kind": "test.count", "params": {"steps": 1e999}}',
    ):
        response = api.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"})
        error = error_of(response, 400)
        assert "steps" in error["message"]


def test_a_lone_surrogate_quoted_back_in_an_error_is_a_400(
    api: httpx.Client, sqlite_server: RunningServer
) -> None:
    # The refusal names the bad key; a lone surrogate cannot be encoded, so it is shown escaped.
    raw = b'{"name": "p", "messages": [{"role": "user", "content": "hi"}], "params": {"\\ud800": 1}}'
    response = api.post("/api/prompts", content=raw, headers={"Content-Type": "application/json"})
    error = error_of(response, 400)
    assert "\\ud800" in error["message"], error
    assert "Logging error" not in sqlite_server.log_text()


def test_json_values_no_encoder_writes_back_are_a_400(api: httpx.Client) -> None:
    # Python's JSON parser takes both; neither can be stored, hashed or answered with.
    for value in (b"193091055637222829987974375140229120", b'{"\\udc00": 1}'):
        raw = b'{"name": "s", "messages": [{"role": "user", "content": "hi"}], "output_schema": {"x": %s}}'
        response = api.post("/api/prompts", content=raw % value, headers={"Content-Type": "application/json"})
        assert "64 bits" in error_of(response, 400)["message"]


def test_a_time_in_a_query_is_iso_8601_not_a_number(api: httpx.Client) -> None:
    for path, more in (
        ("/api/stats/timeseries", {}),
        ("/api/stats/breakdown", {"by": "model"}),
        ("/api/traces", {}),
    ):
        response = api.get(path, params={"end": "-4126", **more})
        assert "ISO 8601" in error_of(response, 400)["message"], path
        assert api.get(path, params={"end": "2026-12-06T12:00:00Z", **more}).status_code == 200, path


def test_deeply_nested_body_is_a_400(api: httpx.Client) -> None:
    raw = b'{"kind": "test.count", "params": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    error = error_of(api.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"}), 400)
    assert "could not be parsed" in error["message"] or "params" in error["message"]


# --- query and path parameters --------------------------------------------------------------------


QUERIES = [
    ("/api/jobs", {"limit": "abc"}, "limit"),
    ("/api/jobs", {"limit": "0"}, "limit"),
    ("/api/jobs", {"limit": "501"}, "limit"),
    ("/api/jobs", {"status": "done"}, "status"),
    ("/api/jobs", {"kind": "k" * 101}, "kind"),
    ("/api/jobs", {"cursor": "c" * 33}, "cursor"),
    ("/api/keys", {"all": "perhaps"}, "all"),
    ("/api/jobs/" + "0" * 32 + "/logs", {"after": "-1"}, "after"),
    ("/api/jobs/" + "0" * 32 + "/logs", {"limit": "1e3"}, "limit"),
]


@pytest.mark.parametrize(("path", "params", "param"), QUERIES, ids=lambda v: str(v)[:30])
def test_bad_query_parameters_are_named(
    api: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    error = error_of(api.get(path, params=params), 400)
    assert error["param"] == param
    assert f"query parameter {param}" in error["message"]


@pytest.mark.parametrize(
    "path", ["/api/jobs?kind=%00", "/api/jobs?cursor=%00", "/api/jobs?kind=%F0%9F%94%91"]
)
def test_odd_filters_find_nothing_or_are_refused(api: httpx.Client, path: str) -> None:
    response = api.get(path)
    if response.status_code == 200:
        assert response.json() == {"data": [], "next_cursor": None}
    else:
        error = error_of(response, 400)
        assert "NUL" in error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/%00",
        "/api/jobs/%00/logs",
        "/api/jobs/" + "9" * 4000,
        "/api/jobs/%F0%9F%94%91",
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/api/projects/%ff",
    ],
)
def test_odd_ids_are_4xx(api: httpx.Client, path: str) -> None:
    error_of(api.get(path), (400, 404))


# --- size limit -----------------------------------------------------------------------------------


def test_body_over_the_limit_is_413(small: RunningServer) -> None:
    body = {"kind": "test.count", "params": {"pad": "x" * (LIMIT * 2)}}
    with small.client() as client:
        response = client.post("/api/jobs", json=body)
        error = error_of(response, 413)
        assert error["code"] == "payload_too_large"
        assert "FMOPS_MAX_BODY_BYTES" in error["message"]
        assert str(LIMIT) in error["message"]
        assert client.get("/api/jobs").json()["data"] == [], "nothing was queued"
        assert client.get("/api/me").status_code == 200


def test_chunked_body_over_the_limit_is_413(small: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "test.count", "params": {"pad": "'
        for _ in range(LIMIT // 256 * 2):
            yield b"x" * 256
        yield b'"}}'

    with small.client() as client:
        response = client.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        error = error_of(response, 413)
        assert error["code"] == "payload_too_large"
        assert "FMOPS_MAX_BODY_BYTES" in error["message"]
        assert client.get("/api/jobs").json()["data"] == []
        assert client.get("/api/me").status_code == 200


def test_chunked_body_under_the_limit_is_accepted(small: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "test.count",'
        yield b' "params": {"steps": 2}}'

    with small.client() as client:
        response = client.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text
        assert response.json()["params"]["steps"] == 2
        client.post(f"/api/jobs/{response.json()['id']}/cancel")


def test_body_just_under_the_limit_is_read(small: RunningServer) -> None:
    body = json.dumps({"name": "k" * 50, "rolee": "x" * (LIMIT - 100)}).encode()
    assert len(body) <= LIMIT
    with small.client() as client:
        response = client.post("/api/keys", content=body, headers={"Content-Type": "application/json"})
    error = error_of(response, 400)
    assert error["param"] == "rolee", "under the limit, the body is parsed and its problem named"


def test_a_declared_length_over_the_limit_is_refused_before_reading(small: RunningServer) -> None:
    # httpx will not send a body shorter than its Content-Length; http.client sends what it is told.
    parts = urlsplit(small.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/api/jobs")
        conn.putheader("Authorization", f"Bearer {small.admin_key}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(LIMIT * 1000))
        conn.endheaders(b'{"kind": "test.count"')
        # The server answers from the header alone; it never waits for the promised megabytes.
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 413
    assert body["error"]["code"] == "payload_too_large"


# --- routes and methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nope", "/v2/chat/completions", "/api/jobs/x/y/z", "/apix"])
def test_unknown_route_is_404_in_error_shape(
    sqlite_server: RunningServer, api: httpx.Client, path: str
) -> None:
    error = error_of(api.get(path), 404)
    assert "no such route" in error["message"]
    anonymous = httpx.get(sqlite_server.url + path, timeout=10)
    assert anonymous.status_code in (401, 404), "no key learns nothing either"


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/api/me"), ("PUT", "/api/jobs"), ("POST", "/healthz"), ("PATCH", "/api/keys")],
)
def test_wrong_method_is_405_in_error_shape(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path)
    error = error_of(response, 405)
    assert "method not allowed" in error["message"]
    assert response.headers.get("allow"), "405 says which methods the route takes"
    assert method not in response.headers["allow"]


def test_no_request_here_became_a_500(sqlite_server: RunningServer, small: RunningServer) -> None:
    for server in (sqlite_server, small):
        log = server.log_text()
        assert '" 500' not in log
        assert "unhandled error" not in log
        assert "Traceback" not in log
