"""Endpoints on a real server, on both backends, called with the official OpenAI SDK: what the
consumer sees, what the trace says, a label moved by the CLI (another process) or through another
replica served on the next call, and bad input answered with a 4xx that names the field."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from support.databases import postgres_database
from support.endpoint_specs import PROMPT, V2, VARIABLES
from support.gateway import cli_env, gateway_server, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

# The real CLI, in one fresh process: a label moved by an operator beside the running server.
_CLI = """
import sys
from fmops.cli import app
app(sys.argv[1:], standalone_mode=False)
"""


@dataclass
class Deployment:
    server: RunningServer
    database_url: str | None  # PostgreSQL's, to start a second replica on it
    mock: MockUpstream
    consumer_key: str

    def admin(self) -> httpx.Client:
        return self.server.client()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp(f"endpoints-{request.param}")
    env = {"FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}  # the mock upstream listens on 127.0.0.1
    if request.param == "sqlite":
        with gateway_server(home, env) as running:
            yield _deployed(running, None, mock)
    else:
        with postgres_database() as url, gateway_server(home, {**env, "FMOPS_DATABASE_URL": url}) as running:
            (home / "fmops.toml").write_text(f'database_url = "{url}"\n')  # for the CLI
            yield _deployed(running, url, mock)


def _deployed(server: RunningServer, url: str | None, mock: MockUpstream) -> Deployment:
    with server.client() as admin:
        for alias in ("small", "other"):
            model = {"alias": alias, "provider": "openai", "model": f"up-{alias}", "base_url": mock.url}
            assert admin.post("/api/models", json=model).status_code == 201
        assert admin.post("/api/prompts", json=PROMPT).status_code == 201
        assert admin.post("/api/prompts", json={**PROMPT, "messages": V2, "labels": []}).status_code == 201
        key = admin.post("/api/keys", json={"name": "app", "role": "consumer"}).json()["key"]
    return Deployment(server, url, mock, key)


def create(admin: httpx.Client, **spec: Any) -> dict[str, Any]:
    resp = admin.post("/api/endpoints", json=spec)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def span_of(admin: httpx.Client, trace_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The root span of a trace, once the trace writer has stored it."""
    deadline = time.monotonic() + timeout
    while True:
        resp = admin.get(f"/api/traces/{trace_id}")
        if resp.status_code == 200:
            span: dict[str, Any] = resp.json()["spans"][0]
            return span
        assert time.monotonic() < deadline, f"no trace {trace_id}: {resp.text}"
        time.sleep(0.05)


def system_prompt_sent(mock: MockUpstream) -> str:
    content: str = mock.state.requests[-1]["body"]["messages"][0]["content"]
    return content


def test_consumers_call_an_endpoint_with_the_openai_sdk(deployment: Deployment) -> None:
    d = deployment
    with d.admin() as admin:
        create(
            admin,
            name="support-bot",
            prompt="support",
            params={"temperature": 0.3},
            variants=[{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "model": "other"}],
            sticky="user",
        )
        client = sdk(d.server, d.consumer_key)
        listed = {m.id: m.owned_by for m in client.models.list()}
        assert listed["support-bot"] == "fmops-endpoint"
        assert listed["small"] == "openai"
        assert client.models.retrieve("support-bot").owned_by == "fmops-endpoint"

        raw = client.chat.completions.with_raw_response.create(
            model="support-bot", messages=[], user="carol", extra_body={"variables": VARIABLES}
        )
        answer = raw.parse()
        assert (answer.model, answer.choices[0].message.content) == ("support-bot", REPLY)
        sent = d.mock.state.requests[-1]["body"]
        assert sent["messages"][0]["content"] == "You answer for Acme. Be brief."
        span = span_of(admin, raw.headers["x-fmops-trace-id"])
        assert (span["endpoint"], span["prompt_name"], span["prompt_version"]) == (
            "support-bot",
            "support",
            1,
        )
        assert span["variant"] in ("a", "b")
        assert span["model"] == {"a": "small", "b": "other"}[span["variant"]]
        assert sent["model"] == f"up-{span['model']}"

        # The same user stays on their variant; streaming goes through the same endpoint.
        for _ in range(3):
            again = client.chat.completions.with_raw_response.create(
                model="support-bot", messages=[], user="carol", extra_body={"variables": VARIABLES}
            )
            assert span_of(admin, again.headers["x-fmops-trace-id"])["variant"] == span["variant"]
        stream = client.chat.completions.create(
            model="support-bot", messages=[], user="carol", stream=True, extra_body={"variables": VARIABLES}
        )
        chunks = list(stream)
        assert {c.model for c in chunks} == {"support-bot"}
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY

        # Consumers read endpoints, engineers change them.
        with d.server.client(d.consumer_key) as consumer:
            assert "support-bot" in {e["name"] for e in consumer.get("/api/endpoints").json()}
            assert consumer.post("/api/endpoints", json={"name": "mine", "model": "small"}).status_code == 403
            assert consumer.delete("/api/endpoints/support-bot").status_code == 403
            assert admin.patch("/api/endpoints/support-bot", json={"enabled": False}).status_code == 200
            assert consumer.get("/api/endpoints/support-bot").status_code == 404
            assert "support-bot" not in {e["name"] for e in consumer.get("/api/endpoints").json()}
            assert "support-bot" not in {m.id for m in client.models.list()}
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(
                    model="support-bot", messages=[], extra_body={"variables": VARIABLES}
                )
            events = admin.get("/api/endpoints/support-bot/events").json()
            assert [e["kind"] for e in events] == ["updated", "created"]


# Another process's change, once per backend (each costs seconds of start-up): the CLI on SQLite,
# a second replica on PostgreSQL.
@pytest.mark.parametrize("deployment", ["sqlite"], indirect=True)
def test_a_label_moved_by_the_cli_is_served_at_once(deployment: Deployment) -> None:
    d = deployment
    with d.admin() as admin:
        assert admin.put("/api/prompts/support/labels/staging", json={"version": 1}).status_code == 200
        create(admin, name="cli-bot", prompt="support", label="staging")
    client = sdk(d.server)
    client.chat.completions.create(model="cli-bot", messages=[], extra_body={"variables": VARIABLES})
    assert system_prompt_sent(d.mock) == "You answer for Acme. Be brief."

    moved = subprocess.run(
        [sys.executable, "-c", _CLI, "prompts", "label", "support", "2", "staging"],
        env=cli_env(d.server.home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr

    client.chat.completions.create(model="cli-bot", messages=[], extra_body={"variables": VARIABLES})
    assert system_prompt_sent(d.mock) == "You answer for Acme in one word."


@pytest.mark.parametrize("deployment", ["postgresql"], indirect=True)
def test_two_replicas_serve_a_moved_label_on_the_next_call(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = deployment
    assert d.database_url is not None
    home_b = tmp_path_factory.mktemp("replica-b")
    (home_b / "admin.key").write_text(d.server.admin_key)  # the shared database has its admin key
    env = {"FMOPS_DATABASE_URL": d.database_url, "FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}
    with d.admin() as admin, gateway_server(home_b, env) as replica:
        assert admin.put("/api/prompts/support/labels/blue", json={"version": 1}).status_code == 200
        create(admin, name="replicated", prompt="support", label="blue")
        b = sdk(replica)
        b.chat.completions.create(model="replicated", messages=[], extra_body={"variables": VARIABLES})
        assert system_prompt_sent(d.mock) == "You answer for Acme. Be brief."
        assert admin.put("/api/prompts/support/labels/blue", json={"version": 2}).status_code == 200
        b.chat.completions.create(model="replicated", messages=[], extra_body={"variables": VARIABLES})
        assert system_prompt_sent(d.mock) == "You answer for Acme in one word."


def test_bad_input_is_a_4xx_naming_the_field(deployment: Deployment) -> None:
    d = deployment
    base = {"name": "bad", "prompt": "support"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"label": "prod"}, 400, "label"),
        ({"variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}, 400, "variants"),
        (
            {"guardrails": [{"on": "input", "scorer": "regex", "config": {"pattern": "("}}]},
            400,
            "guardrails.0.config.pattern",
        ),
        ({"name": "small"}, 400, "name"),
        ({"params": {"temprature": 1}}, 400, "params"),
    ]
    with d.admin() as admin:
        for change, status, param in cases:
            resp = admin.post("/api/endpoints", json={**base, **change})
            assert resp.status_code == status, (change, resp.text)
            assert resp.json()["error"]["param"] == param, (change, resp.text)
        create(
            admin,
            name="careful",
            prompt="support",
            guardrails=[
                {"on": "output", "scorer": "contains", "config": {"strings": ["secret"], "mode": "none"}}
            ],
        )
        assert admin.post("/api/endpoints", json={"name": "careful", "model": "small"}).status_code == 409
        assert admin.patch("/api/endpoints/nope", json={"enabled": True}).status_code == 404
        assert admin.put("/api/endpoints/careful/weights", json={"weights": {"a": 1}}).json()["error"][
            "param"
        ] == ("weights")

        client = sdk(d.server)
        with pytest.raises(openai.BadRequestError) as plain:
            client.chat.completions.create(model="small", messages=[], extra_body={"variables": VARIABLES})
        assert plain.value.body["param"] == "variables"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as missing:
            client.chat.completions.create(
                model="careful", messages=[], extra_body={"variables": {"company": "A"}}
            )
        assert "question" in missing.value.message

        httpx.post(d.mock.url.removesuffix("/v1") + "/_control/script", json={"reply": "the secret is 42"})
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            client.chat.completions.create(model="careful", messages=[], extra_body={"variables": VARIABLES})
        assert refused.value.body["code"] == "guardrail_blocked"  # type: ignore[index]
        span = span_of(admin, refused.value.response.headers["x-fmops-trace-id"])
        assert span["status"] == "error"
        assert "output blocked by guardrail" in span["status_message"]
        trace = admin.get(f"/api/traces/{span['trace_id']}").json()["spans"][0]
        assert trace["output"]["content"] == "the secret is 42"  # the trace keeps what was refused


def test_an_endpoint_over_the_default_local_model(deployment: Deployment) -> None:
    """Real inference: the endpoint renders its prompt for SmolLM2 (llama.cpp, on the CPU)."""
    d = deployment
    local = {
        "name": "local-greeter",
        "model": "smollm2-135m-instruct",
        "params": {"max_tokens": 12, "temperature": 0},
        "messages": [{"role": "user", "content": "Say hello to {{ name }} in one short sentence."}],
        "labels": ["production"],
    }
    with d.admin() as admin:
        assert admin.post("/api/prompts", json=local).status_code == 201
        create(admin, name="greeter", prompt="local-greeter")
        raw = sdk(d.server, d.consumer_key).chat.completions.with_raw_response.create(
            model="greeter", messages=[], extra_body={"variables": {"name": "Ada"}}
        )
        answer = raw.parse()
        assert answer.model == "greeter"
        assert (answer.choices[0].message.content or "").strip()
        assert 0 < (answer.usage.completion_tokens if answer.usage else 0) <= 12
        span = span_of(admin, raw.headers["x-fmops-trace-id"])
        assert (span["endpoint"], span["prompt_name"], span["prompt_version"], span["model"]) == (
            "greeter",
            "local-greeter",
            1,
            "smollm2-135m-instruct",
        )
        sent = span["input"]["messages"]
        assert sent == [{"role": "user", "content": "Say hello to Ada in one short sentence."}]
