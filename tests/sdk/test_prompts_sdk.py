"""`client.prompts` against a real server: push, get by label, render locally in the same sandbox,
the short client-side cache (and a stale copy when the server is unreachable), labels."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import fmops
from fmops.prompts.templates import TemplateError
from fmops.sdk.errors import APIConnectionError, BadRequestError, NotFoundError
from support.server import RunningServer, start_server
from support.tcp_proxy import tcp_proxy


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server (SQLite; the SDK does not care which backend), without job workers."""
    with start_server(tmp_path_factory.mktemp("sdk-prompts"), {"FMOPS_WORKERS": "0"}) as running:
        yield running


SPEC = {
    "name": "sdk-support",
    "model": None,
    "params": {"temperature": 0.1},
    "messages": [
        {"role": "system", "content": "You answer for {{ company }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "labels": ["production"],
}
V2 = """\
name: sdk-support
params: {temperature: 0.9}
messages:
  - {role: system, content: "You answer for {{ company }}, briefly."}
  - {role: user, content: "{{ question }}"}
"""


def test_push_get_render_and_labels(api: RunningServer) -> None:
    with fmops.Client(api.url, api.admin_key) as client:
        first = client.prompts.push(SPEC)
        assert (first.version, first.labels, first.created) == (1, ["production"], True)
        second = client.prompts.push(V2)  # YAML text
        assert (second.version, second.params, second.created) == (2, {"temperature": 0.9}, True)
        assert client.prompts.push(V2).created is False

        prompt = client.prompts.get("sdk-support", label="production")
        assert (prompt.version, prompt.model, prompt.output_schema, prompt.variables) == (
            1,
            None,
            None,
            ["company", "question"],
        )
        assert prompt.render(company="Acme", question="{{ 7*7 }}") == [
            {"role": "system", "content": "You answer for Acme."},
            {"role": "user", "content": "{{ 7*7 }}"},
        ]
        with pytest.raises(TemplateError, match="missing variables: question"):
            prompt.render(company="Acme")
        assert client.prompts.get("sdk-support").version == 2
        assert [p.name for p in client.prompts.list()] == ["sdk-support"]

        moved = client.prompts.set_label("sdk-support", 2, "production")
        assert moved.labels == ["production"]
        assert client.prompts.get("sdk-support", label="production").version == 2
        with pytest.raises(NotFoundError, match="no label 'prod'"):
            client.prompts.get("sdk-support", label="prod")
        with pytest.raises(BadRequestError) as caught:
            client.prompts.push({**SPEC, "params": {"temprature": 1}})
        assert caught.value.param == "params.temprature"


def test_fetched_prompts_are_cached_briefly_and_served_stale_when_the_server_is_down(
    api: RunningServer,
) -> None:
    admin = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.admin_key}"})
    spec = {**SPEC, "name": "cached", "labels": ["production"]}
    admin.post("/api/prompts", json=spec).raise_for_status()
    admin.post("/api/prompts", json={**spec, "params": {"temperature": 0.5}, "labels": []}).raise_for_status()

    port = int(api.url.rsplit(":", 1)[1])
    with (
        tcp_proxy("127.0.0.1", port) as proxy,
        fmops.Client(f"http://127.0.0.1:{proxy.port}", api.admin_key) as client,
    ):
        assert client.prompts.get("cached", label="production").version == 1
        # Moved elsewhere (another process): this client keeps its copy until it is 60 s old...
        admin.put("/api/prompts/cached/labels/production", json={"version": 2}).raise_for_status()
        assert client.prompts.get("cached", label="production").version == 1
        # ...unless asked not to cache, which fetches (and refreshes the copy).
        assert client.prompts.get("cached", label="production", cache_seconds=0).version == 2

        proxy.cut()
        assert (
            client.prompts.get("cached", label="production", cache_seconds=0).version == 2
        )  # stale, not down
        with pytest.raises(APIConnectionError):
            client.prompts.get("cached", version=1)  # never fetched: nothing to fall back on
    admin.close()

    uncached = fmops.Client(api.url, api.admin_key, prompt_cache_seconds=0)
    with uncached:
        assert uncached.prompts.get("cached", label="production").version == 2
