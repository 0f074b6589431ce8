"""`client.prompts`: read prompt versions and render them locally, push specs, move labels.

    prompt = client.prompts.get("support", label="production")
    messages = prompt.render(company="Acme", question="Where is my order?")
    client.openai.chat.completions.create(model=prompt.model, messages=messages, **prompt.params)

A fetched prompt is kept for `cache_seconds` (default 60) so a hot path does not call the server
for every request, as Langfuse's client does; `cache_seconds=0` always fetches. When the server
cannot be reached, a copy fetched earlier is returned even if it is older than that, so a short
outage does not take the application down with it. Rendering uses the same sandboxed templates as
the server, so a prompt renders here exactly as an endpoint renders it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import Field

from fmops.sdk.errors import APIConnectionError
from fmops.sdk.models import _Model

if TYPE_CHECKING:
    from fmops.sdk.client import Client

DEFAULT_CACHE_SECONDS = 60.0


class Prompt(_Model):
    """One version of a prompt; `render(**variables)` gives the chat messages to send."""

    name: str
    version: int
    messages: list[dict[str, Any]]
    variables: list[str] = Field(default_factory=list)
    model: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    message: str | None = None
    author: str | None = None
    created_at: datetime
    labels: list[str] = Field(default_factory=list)
    created: bool | None = None  # from push: False when the content equals the newest version's

    def render(self, **variables: Any) -> list[dict[str, Any]]:
        """The messages with their templates filled in; a missing variable raises a
        `fmops.prompts.templates.TemplateError` naming it."""
        from fmops.prompts.templates import render_messages  # Jinja loads only when a prompt renders

        return render_messages(self.messages, variables)


class PromptSummary(_Model):
    name: str
    description: str | None = None
    latest_version: int
    labels: dict[str, int] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class Prompts:
    def __init__(self, client: Client, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self._client = client
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str | None, int | None], tuple[float, Prompt]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        name: str,
        label: str | None = None,
        version: int | None = None,
        *,
        cache_seconds: float | None = None,
    ) -> Prompt:
        """A version by label or number; neither: the newest. Served from the cache when fresh."""
        key = (name, label, version)
        ttl = self.cache_seconds if cache_seconds is None else cache_seconds
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and ttl > 0 and time.monotonic() - hit[0] < ttl:
            return hit[1]
        params = {"version": version, "label": label}
        try:
            data = self._client.request("GET", f"/api/prompts/{quote(name, safe='')}", params=params)
        except APIConnectionError:
            if hit is not None:
                return hit[1]  # stale beats down: the server is unreachable, not the prompt gone
            raise
        prompt = Prompt.model_validate(data)
        with self._lock:
            self._cache[key] = (time.monotonic(), prompt)
        return prompt

    def list(self) -> list[PromptSummary]:
        """Every prompt of the key's project, with its newest version and labels."""
        return [PromptSummary.model_validate(p) for p in self._client.request("GET", "/api/prompts")]

    def push(self, spec: dict[str, Any] | str | Path) -> Prompt:
        """Push a spec (a dict, YAML text, or a YAML/JSON file's path); the new version, or the
        newest one unchanged when the content is the same (`prompt.created` says which)."""
        if isinstance(spec, Path):
            spec = spec.read_text()
        if isinstance(spec, str):
            data = self._client.request_content("POST", "/api/prompts", spec, "application/yaml")
        else:
            data = self._client.request("POST", "/api/prompts", json=spec)
        self.clear()
        return Prompt.model_validate(data)

    def set_label(self, name: str, version: int, label: str) -> Prompt:
        """Point `label` at `version`; endpoints serving the label switch at once."""
        data = self._client.request(
            "PUT",
            f"/api/prompts/{quote(name, safe='')}/labels/{quote(label, safe='')}",
            json={"version": version},
        )
        self.clear()
        return Prompt.model_validate(data)

    def clear(self) -> None:
        """Forget every cached prompt (a push or a label set through this client does it)."""
        with self._lock:
            self._cache.clear()
