"""Issue 7, item 6: template-injection payloads are text or refused, on every route; no route runs code.

The renderer's sandbox is tested in tests/prompts/test_sandbox.py; here the payloads go through
the routes that carry user text to a template or a model: prompt push and render, the gateway
on an endpoint (variables) and on a model (messages), the playground, feedback comments, key
names, and a local engine's `chat_template` option set over the API. Each payload that gets in
comes back (or reaches the upstream) character for character; each template escape is a 400;
a marker folder the payloads try to create never appears; nothing answers 5xx.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.hostile import Hostile
from support.security import Tenant, add_trusted_model, error_of
from support.server import RunningServer

pytestmark = pytest.mark.parametrize("secured", ["sqlite"], indirect=True)  # rendering is backend-free


def payloads(marker: Path) -> list[str]:
    """Values that some template engine or `eval` would act on; here they must stay text."""
    return [
        "{{ 7*7 }}",
        "{{7*'7'}}",
        "${7*7}",
        "#{7*7}",
        "<%= 7*7 %>",
        "{7*7}",
        "{0.__class__}",
        "%(x)s %s",
        "{% for i in range(3) %}x{% endfor %}",
        f"{{{{ cycler.__init__.__globals__.os.mkdir('{marker}') }}}}",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}{marker}",
        f"__import__('os').mkdir('{marker}')",
        "{{ config }}{{ self }}{{ request }}",
        "{{ raw }}{% raw %}{{ x }}{% endraw %}",
    ]


def escapes(marker: Path) -> list[str]:
    """Templates that try to leave the sandbox: refused when a prompt is pushed or rendered."""
    return [
        f"{{{{ cycler.__init__.__globals__.os.mkdir('{marker}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ {}.__class__.__base__.__subclasses__() }}",
        "{% set x = namespace() %}{{ x.__init__.__globals__ }}",
    ]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "template-code-ran"


def _prompt(client: httpx.Client, name: str, content: str) -> httpx.Response:
    spec = {"name": name, "model": "t-echo", "messages": [{"role": "user", "content": content}]}
    return client.post("/api/prompts", json={**spec, "labels": ["production"]})


def _setup(secured: RunningServer, tenant: Tenant, hostile: Hostile, engineer: httpx.Client) -> None:
    spec = {"alias": "t-echo", "provider": "openai", "model": "fine", "base_url": hostile.url}
    if engineer.get("/api/models/t-echo").status_code == 404:
        add_trusted_model(secured, tenant.project_id, spec)
    assert _prompt(engineer, "t-question", "Q: {{ question }}").status_code in (200, 201)
    endpoint = {"name": "t-endpoint", "prompt": "t-question"}
    assert engineer.post("/api/endpoints", json=endpoint).status_code in (201, 409)


def _last_upstream_message(hostile: Hostile) -> str:
    content: str = hostile.requests[-1]["body"]["messages"][-1]["content"]
    return content


def test_payloads_stay_text_on_every_route(
    secured: RunningServer, tenant_a: Tenant, hostile: Hostile, marker: Path
) -> None:
    with tenant_a.client(secured, "engineer") as engineer, tenant_a.client(secured, "consumer") as consumer:
        _setup(secured, tenant_a, hostile, engineer)
        for value in payloads(marker):
            rendered = consumer.post(
                "/api/prompts/t-question/render", json={"variables": {"question": value}}
            )
            assert rendered.status_code == 200, (value, rendered.text)
            assert rendered.json()["messages"][-1]["content"] == f"Q: {value}"

            call = {"model": "t-endpoint", "messages": [], "variables": {"question": value}}
            answered = consumer.post("/v1/chat/completions", json=call)
            assert answered.status_code == 200, (value, answered.text)
            assert _last_upstream_message(hostile) == f"Q: {value}"

            direct = {"model": "t-echo", "messages": [{"role": "user", "content": value}]}
            answered = consumer.post("/v1/chat/completions", json=direct)
            assert answered.status_code == 200, (value, answered.text)
            assert _last_upstream_message(hostile) == value
            trace = answered.headers["x-fmops-trace-id"]

            feedback = {"trace_id": trace, "kind": "comment", "comment": value}
            given = consumer.post("/api/feedback", json=feedback)
            assert given.status_code == 201, (value, given.text)
            assert given.json()["comment"] == value

            key = consumer.post("/api/keys", json={"name": value[:100]})  # names are at most 100 long
            assert key.status_code == 201, (value, key.text)
            assert key.json()["name"] == value[:100]

        grid = {
            "inputs": [{"variables": {"question": v}} for v in payloads(marker)[:5]],
            "targets": [{"prompt": "t-question"}],
        }
        played = engineer.post("/api/playground", json=grid)
        assert played.status_code == 200, played.text
        assert all(cell["error"] is None for cell in played.json()["cells"]), played.text
    assert not marker.exists(), "a payload ran as code"
    assert "49" not in _last_upstream_message(hostile)


def test_template_escapes_are_refused_when_pushed(
    secured: RunningServer, tenant_a: Tenant, hostile: Hostile, marker: Path
) -> None:
    # Refused at push, with line and column: no version that could be rendered ever exists.
    with tenant_a.client(secured, "engineer") as engineer:
        _setup(secured, tenant_a, hostile, engineer)
        for i, template in enumerate(escapes(marker)):
            name = f"t-escape-{i}"
            error = error_of(_prompt(engineer, name, template), 400)
            assert error["param"] == "messages[0].content", (template, error)
            assert "at line 1, column " in error["message"], (template, error)
            assert "may not" in error["message"], (template, error)
            assert engineer.get(f"/api/prompts/{name}").status_code == 404, template
    assert not marker.exists(), "a template left the sandbox"


def test_a_chat_template_set_over_the_api_runs_sandboxed(
    secured: RunningServer, tenant_a: Tenant, marker: Path
) -> None:
    # A local engine's chat template is a Jinja template an engineer may set over the API.
    escape = f"{{{{ cycler.__init__.__globals__.os.mkdir('{marker}') }}}}{{{{ messages[0]['content'] }}}}"
    spec: dict[str, Any] = {
        "alias": f"t-local-{uuid.uuid4().hex[:6]}",
        "provider": "llamacpp",
        "model": "default",
        "options": {"chat_template": escape, "max_tokens": 1, "n_ctx": 256},
    }
    with tenant_a.client(secured, "engineer") as engineer:
        assert engineer.post("/api/models", json=spec).status_code == 201
        call = {"model": spec["alias"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        answered = engineer.post("/v1/chat/completions", json=call)
    error = error_of(answered, 400)
    assert "chat template" in error["message"], error
    assert not marker.exists(), "the chat template ran code"
