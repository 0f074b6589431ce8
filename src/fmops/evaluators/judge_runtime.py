"""The gateway as a job worker process sees it: judge calls go through the same catalog, limits,
budgets, spend accounting and tracing as any other call.

Job handlers are synchronous and run one at a time in the worker's main thread; the gateway is
async. One event loop per worker process runs in a thread of its own, so providers (HTTP sessions,
a loaded local model) live as long as the process and are reused from job to job. Each judge call
is traced like any call, with `fmops.evaluator` (the rule's name) and `fmops.evaluated_trace_id`
set, which the online evaluators skip.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

from fmops.auth import Principal
from fmops.catalog import Catalog
from fmops.counters import make_counters
from fmops.errors import FmopsError
from fmops.evaluators.online import EVALUATOR_ATTRIBUTE
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.stack import build_gateway, build_tracer
from fmops.providers.registry import get_provider_class
from fmops.scorers import ChatFn, ScorerError, ScorerUnavailable
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store

T = TypeVar("T")
EVALUATED_TRACE_ATTRIBUTE = "fmops.evaluated_trace_id"
# Statuses worth retrying later: rate limits, budgets that reset, upstreams down or slow.
TRANSIENT = {429, 502, 503, 504}
# Set while a judge call runs: (rule name, the trace it judges), read by the span hook below.
_judging: ContextVar[tuple[str, str] | None] = ContextVar("fmops_judging", default=None)
_shared: JudgeRuntime | None = None
_shared_lock = threading.Lock()


def _mark(row: dict[str, Any]) -> None:
    judging = _judging.get()
    if judging is not None:
        attributes = row.setdefault("attributes", {})
        attributes[EVALUATOR_ATTRIBUTE], attributes[EVALUATED_TRACE_ATTRIBUTE] = judging


class JudgeRuntime:
    def __init__(self, settings: Settings) -> None:
        # The same gateway stack as the server's (`fmops.gateway.stack`), without its web layers.
        self.store = Store(settings.database_url)
        catalog = Catalog(self.store, settings, SecretBox.from_settings(settings))
        self.tracer = build_tracer(settings, self.store, on_record=_mark)
        self.gateway = build_gateway(settings, self.store, catalog, self.tracer, make_counters(settings))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fmops-judge-loop", daemon=True)
        self._thread.start()
        self.run(self._start())

    @classmethod
    def shared(cls, settings: Settings) -> JudgeRuntime:
        """This process's runtime, made on first use."""
        global _shared
        with _shared_lock:
            if _shared is None:
                _shared = cls(settings)
            return _shared

    async def _start(self) -> None:
        self.tracer.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def flush(self) -> None:
        """Write the judge calls' spans now, so none wait in memory when the job ends."""
        self.run(self.tracer.flush())

    def chat_fn(self, principal: Principal, rule_name: str, trace_id: str) -> ChatFn:
        """A `ChatFn` that calls through the gateway as `principal`, marking its span."""

        def chat(body: dict[str, Any]) -> dict[str, Any]:
            return self.run(self._chat(principal, body, (rule_name, trace_id)))

        return chat

    async def _chat(
        self, principal: Principal, body: dict[str, Any], mark: tuple[str, str]
    ) -> dict[str, Any]:
        _judging.set(mark)  # this task's own context: other calls are not marked
        try:
            if not await self._can_force_json(principal, str(body.get("model"))):
                # The prompt asks for the same JSON; the judge's parser is lenient about the rest.
                body = {k: v for k, v in body.items() if k != "response_format"}
            req = ChatCompletionRequest.model_validate(body)
            result = await self.gateway.chat(principal, req)
        except FmopsError as exc:
            if exc.status_code in TRANSIENT:
                raise ScorerUnavailable(f"judge model unavailable: {exc.message}") from None
            raise ScorerError(f"judge model refused the call: {exc.message}") from None
        return result.body

    async def _can_force_json(self, principal: Principal, alias: str) -> bool:
        entry = await self.gateway.resolve(principal, alias)
        base = get_provider_class(entry.provider).capabilities.json_schema
        return bool(entry.capabilities.get("json_schema", base))
