"""A prompt optimisation world on each backend: a cheap deterministic upstream for the target and
the optimizer model, a prompt `echo` (instructions only) and an inline suite of 12 cases.

The upstream's `task` model answers the user's text in upper case (what the cases expect) when its
instructions say UPPERCASE or a demonstration shows an upper-case answer, else echoes it as sent;
`reflector` proposes instructions that say UPPERCASE; `mute` answers nothing usable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from fmops.auth import Principal
from fmops.catalog import ModelSpec
from fmops.jobs import JobContext
from fmops.optimizers.job import execute, service_for
from fmops.optimizers.service import OptimizeService, Request
from fmops.platform import Platform
from fmops.prompts.schemas import MessageTemplate, PromptSpec
from fmops.store.models import PromptOptimization
from support.threaded_app import serve_in_thread

WORDS = ["alpha", "bravo", "CHARLIE", "delta", "echo", "foxtrot", "golf", "hotel", "INDIA", "juliet",
         "kilo", "lima"]  # fmt: skip
REFLECTION = "<instructions>Repeat the user's text in UPPERCASE letters.</instructions>"


def _answer(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    model = body.get("model")
    if model == "reflector":
        return REFLECTION
    if model == "mute":
        return "ok"
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    shown = [m["content"] for m in messages if m["role"] == "assistant"]
    text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    loud = "UPPERCASE" in system or any(a.isupper() for a in shown)
    return text.upper() if loud else text


@dataclass
class Upstream:
    url: str
    calls: Counter[str] = field(default_factory=Counter)
    prefixes: list[str] = field(default_factory=list)  # each `task` call's messages before the case's


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    state = Upstream("")

    async def chat(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        state.calls[str(body.get("model"))] += 1
        if body.get("model") == "task":
            state.prefixes.append(orjson.dumps(body["messages"][:-1]).decode())
        text = _answer(body)
        return web.json_response(
            {
                "id": "chatcmpl-opt",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve_in_thread(app) as port:
        state.url = f"http://127.0.0.1:{port}/v1"
        yield state


def suite(count: int = 12, **extra: Any) -> dict[str, Any]:
    return {
        "name": "loud",
        "cases": [{"input": w, "expected": w.upper()} for w in WORDS[:count]],
        "targets": [{"model": "task", "prompt": "echo"}],
        "scorers": [{"name": "exact_match"}],
        "concurrency": 4,
        **extra,
    }


@dataclass
class World:
    platform: Platform
    principal: Principal
    upstream: Upstream

    @property
    def project(self) -> str:
        return self.principal.project_id

    @property
    def service(self) -> OptimizeService:
        return service_for(self.platform.store, self.platform.settings, self.platform.jobs)

    def push(self, content: str, *, role: str = "system", labels: list[str] | None = None) -> int:
        spec = PromptSpec(
            name="echo",
            model="task",
            messages=[MessageTemplate(role=role, content=content)],  # type: ignore[arg-type]
            labels=labels or [],
        )
        view, _ = self.service.prompts.push(self.project, spec, author="test", author_key_id=None)
        return view.version

    def start(self, **options: Any) -> PromptOptimization:
        request = Request(**{"prompt": "echo@production", "suite": suite(), **options})
        return self.service.start(self.project, request, created_by_key_id=self.principal.key_id)

    def context(self, run: PromptOptimization) -> JobContext:
        assert run.job_id is not None
        return JobContext(self.platform.jobs, run.job_id, self.project, None, self.platform.settings)

    def execute(self, run: PromptOptimization, ctx: JobContext | None = None) -> PromptOptimization:
        execute(self.platform.store, self.platform.settings, ctx or self.context(run), run.id)
        return self.service.get(self.project, run.id)


@pytest.fixture
def world(platform: Platform, upstream: Upstream) -> World:
    key = platform.auth.bootstrap(platform.settings.home / "admin.key")
    assert key is not None
    w = World(platform, platform.auth.authenticate(key), upstream)
    for alias in ("task", "reflector", "mute"):
        spec = ModelSpec(alias=alias, provider="openai", model=alias, base_url=upstream.url)
        platform.catalog.add(w.project, spec, trusted=True)
    w.push("Repeat the user's text.", labels=["production"])
    return w
