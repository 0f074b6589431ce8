"""Bad input gets a clear 4xx in OpenAI's error shape, never a 500; roles and upstream URLs are enforced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.gateway import add_models, gateway_server, openai_model, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

MAX_BODY = 64 * 1024
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("gateway-bad-requests")
    with gateway_server(home, {"FMOPS_MAX_BODY_BYTES": str(MAX_BODY)}) as running:
        add_models(
            home,
            {
                "small": openai_model("upstream-small", mock.url, "--context-window", "100"),
                "other": openai_model("upstream-other", mock.url),
            },
        )
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with sdk(server) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as running:
        yield running


def _key(http: httpx.Client, role: str) -> str:
    resp = http.post("/api/keys", json={"name": f"{role}-key", "role": role})
    assert resp.status_code == 201, resp.text
    key: str = resp.json()["key"]
    return key


@pytest.fixture(scope="module")
def consumer_key(http: httpx.Client) -> str:
    return _key(http, "consumer")


@pytest.fixture(scope="module")
def engineer_key(http: httpx.Client) -> str:
    return _key(http, "engineer")


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


# --- chat requests ----------------------------------------------------------------------------


def test_unknown_model_is_404_listing_known_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gtp-4o", messages=MESSAGES)
    message = caught.value.message
    assert "gtp-4o" in message
    assert "known models" in message
    assert "small" in message
    assert "other" in message
    assert caught.value.code == "model_not_found"


def test_missing_messages(http: httpx.Client) -> None:
    error = _error(http.post("/v1/chat/completions", json={"model": "small"}), 400)
    assert "messages" in error["message"]
    assert "required" in error["message"].lower()


def test_empty_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="small", messages=[])
    assert "messages" in caught.value.message


def test_wrong_role(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="small", messages=[{"role": "wizard", "content": "hi"}])  # type: ignore[list-item, misc]
    assert "role" in caught.value.message
    assert "'user'" in caught.value.message  # says which roles are allowed


def test_tool_message_needs_its_call_id(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="small", messages=[{"role": "tool", "content": "42"}])  # type: ignore[list-item, misc]
    assert "tool_call_id" in caught.value.message


def test_max_tokens_beyond_context_window(client: openai.OpenAI, mock: MockUpstream) -> None:
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="small", messages=MESSAGES, max_tokens=1000)
    assert "max_tokens is 1000" in caught.value.message
    assert "context window of 100" in caught.value.message
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="small", messages=MESSAGES, max_completion_tokens=101)
    assert len(mock.state.requests) == before  # refused before any upstream call
    ok = client.chat.completions.create(model="small", messages=MESSAGES, max_tokens=100)
    assert ok.choices[0].message.content == REPLY


@pytest.mark.parametrize("field", ["base_url", "api_base", "api_key"])
def test_upstream_override_in_the_body_is_refused(
    client: openai.OpenAI, mock: MockUpstream, field: str
) -> None:
    before = len(mock.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="small", messages=MESSAGES, extra_body={field: "http://169.254.169.254/latest"}
        )
    assert field in caught.value.message
    assert "cannot be set per request" in caught.value.message
    assert len(mock.state.requests) == before


def test_body_over_the_limit_is_413(client: openai.OpenAI, http: httpx.Client) -> None:
    big = [{"role": "user", "content": "x" * (MAX_BODY + 10)}]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="small", messages=big)  # type: ignore[arg-type]
    assert caught.value.status_code == 413
    assert str(MAX_BODY) in caught.value.message
    # Also when the body comes without a Content-Length (chunked).
    chunks = iter(
        [b'{"model": "small", "messages": [{"role": "user", "content": "', b"y" * MAX_BODY, b'"}]}']
    )
    error = _error(http.post("/v1/chat/completions", content=chunks), 413)
    assert str(MAX_BODY) in error["message"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages"),
        ({"stream": {"yes": True}}, "stream"),
        ({"n": -1}, "n"),
        ({"model": 7}, "model"),
        ({"tools": "get_weather"}, "tools"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"temprature": 0.5}, "temprature"),  # a typo is named, not ignored
    ],
)
def test_wrong_types_are_400_naming_the_field(http: httpx.Client, change: dict[str, Any], param: str) -> None:
    body = {"model": "small", "messages": MESSAGES, **change}
    error = _error(http.post("/v1/chat/completions", json=body), 400)
    assert param in error["message"]
    assert error["type"] == "invalid_request_error"


def test_body_that_is_not_json(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        content=b'{"model": "small", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = _error(resp, 400)
    assert "JSON" in error["message"]


def test_embeddings_bad_input(http: httpx.Client) -> None:
    error = _error(http.post("/v1/embeddings", json={"model": "other", "input": []}), 400)
    assert "input" in error["message"]
    # Token-id inputs are outside the schema: the providers here embed text.
    error = _error(http.post("/v1/embeddings", json={"model": "other", "input": [[1, 2, 3]]}), 400)
    assert "input" in error["message"]
    error = _error(
        http.post("/v1/embeddings", json={"model": "other", "input": "x", "encoding_format": "int8"}), 400
    )
    assert "encoding_format" in error["message"]


# --- roles ------------------------------------------------------------------------------------


def test_consumer_key_may_call_the_gateway(server: RunningServer, consumer_key: str) -> None:
    with sdk(server, consumer_key) as client:
        answer = client.chat.completions.create(model="other", messages=MESSAGES)
        assert answer.choices[0].message.content == REPLY
        assert "other" in {m.id for m in client.models.list().data}


def test_no_key_is_401(server: RunningServer) -> None:
    with sdk(server, "fmk-not-a-real-key") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="other", messages=MESSAGES)
    resp = httpx.post(server.url + "/v1/chat/completions", json={"model": "other", "messages": MESSAGES})
    _error(resp, 401)


def test_adding_a_model_needs_an_engineer(
    server: RunningServer, consumer_key: str, mock: MockUpstream
) -> None:
    spec = {"alias": "consumer-made", "provider": "openai", "model": "x", "base_url": "https://8.8.8.8/v1"}
    with server.client(consumer_key) as consumer:
        error = _error(consumer.post("/api/models", json=spec), 403)
        assert "engineer" in error["message"]
        _error(consumer.patch("/api/models/other", json={"max_retries": 1}), 403)
        _error(consumer.delete("/api/models/other"), 403)
        assert consumer.get("/api/models/other").status_code == 200  # reading is fine


# --- upstream URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://127.0.0.1:9/v1", "loopback or private"),
        ("http://10.1.2.3/v1", "loopback or private"),
        ("http://[::1]:8000/v1", "loopback or private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1", "metadata"),
        ("file:///etc/passwd", "http:// or https://"),
        ("ftp://8.8.8.8/v1", "http:// or https://"),
        ("https://user:pw@8.8.8.8/v1", "credentials"),
    ],
)
def test_api_refuses_internal_upstreams(
    server: RunningServer, engineer_key: str, base_url: str, reason: str
) -> None:
    spec = {"alias": "ssrf", "provider": "openai", "model": "x", "base_url": base_url, "api_key": "sk-x"}
    with server.client(engineer_key) as http:
        error = _error(http.post("/api/models", json=spec), 400)
    assert reason in error["message"]
    assert error["param"] == "base_url"


def test_patch_base_url_needs_the_api_key_again(server: RunningServer, engineer_key: str) -> None:
    spec = {
        "alias": "public",
        "provider": "openai",
        "model": "gpt-x",
        "base_url": "https://8.8.8.8/v1",
        "api_key": "sk-one",
    }
    with server.client(engineer_key) as http:
        assert http.post("/api/models", json=spec).status_code == 201
        error = _error(http.patch("/api/models/public", json={"base_url": "https://8.8.4.4/v1"}), 400)
        assert "api_key" in error["message"]
        assert http.get("/api/models/public").json()["base_url"] == "https://8.8.8.8/v1"  # unchanged
        _error(
            http.patch("/api/models/public", json={"base_url": "http://127.0.0.1:1/v1", "api_key": "sk-2"}),
            400,
        )
        _error(
            http.patch("/api/models/public", json={"base_url": "http://169.254.169.254/", "api_key": "sk-2"}),
            400,
        )
        moved = http.patch("/api/models/public", json={"base_url": "https://8.8.4.4/v1", "api_key": "sk-two"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["base_url"] == "https://8.8.4.4/v1"
        # Other changes need no key.
        assert http.patch("/api/models/public", json={"max_retries": 0}).json()["max_retries"] == 0
        assert http.delete("/api/models/public").status_code == 204


def test_model_spec_errors_are_400(server: RunningServer, engineer_key: str) -> None:
    with server.client(engineer_key) as http:
        error = _error(http.post("/api/models", json={"alias": "x", "provider": "nope", "model": "m"}), 400)
        assert "unknown provider" in error["message"]
        error = _error(
            http.post(
                "/api/models", json={"alias": "x", "provider": "openai", "model": "m", "fallbacks": ["ghost"]}
            ),
            400,
        )
        assert "ghost" in error["message"]
        error = _error(
            http.post("/api/models", json={"alias": "small", "provider": "openai", "model": "m"}), 409
        )
        assert "already exists" in error["message"]
        _error(
            http.post("/api/models", json={"alias": "bad alias!", "provider": "openai", "model": "m"}), 400
        )


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("gateway-allow-private")
    with gateway_server(home, {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}) as running:
        yield running


def test_allow_private_setting_admits_loopback_but_never_metadata(
    private_server: RunningServer, mock: MockUpstream
) -> None:
    with private_server.client() as http:
        spec = {
            "alias": "local-mock",
            "provider": "openai",
            "model": "upstream-private",
            "base_url": mock.url,
        }
        added = http.post("/api/models", json=spec)
        assert added.status_code == 201, added.text
        for url in ("http://169.254.169.254/latest/meta-data", "file:///etc/passwd"):
            refused = {**spec, "alias": "refused", "base_url": url}
            _error(http.post("/api/models", json=refused), 400)
    with sdk(private_server) as client:
        answer = client.chat.completions.create(model="local-mock", messages=MESSAGES)
    assert answer.choices[0].message.content == REPLY
