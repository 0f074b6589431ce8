"""What the local chat engines (`llamacpp`, `transformers`) share: the Provider methods around an
engine thread. A subclass says how to load its model (`engine`) and how to generate (`_generate`)."""

from __future__ import annotations

import asyncio
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import aclosing
from typing import Any, Generic, TypeVar

from fmops.providers.base import JSON, Provider, ProviderConfig
from fmops.providers.chat_format import (
    ChatRequest,
    Outcome,
    chat_response,
    new_completion_id,
    parse_chat_request,
    stream_chunks,
)
from fmops.providers.engine import EngineThread

L = TypeVar("L")
Emit = Callable[[str | Outcome], None]


class LocalChatProvider(Provider, Generic[L]):
    defaults: dict[str, Any]

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._engine: EngineThread[L] | None = None
        self._key: Hashable = None

    @property
    @abstractmethod
    def engine(self) -> EngineThread[L]:
        """This model's shared engine thread (created, not loaded, on first use)."""

    @abstractmethod
    def _generate(self, loaded: L, request: ChatRequest, cancelled: threading.Event, emit: Emit) -> Outcome:
        """Generate on the engine thread, emitting text pieces; stop when `cancelled` is set."""

    @abstractmethod
    def _model_name(self, request: ChatRequest) -> str: ...

    def _request(self, body: JSON) -> ChatRequest:
        return parse_chat_request(body, provider=self.name, defaults=self.defaults)

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        request = self._request(body)
        outcome = await self.engine.call(
            lambda loaded, cancelled: self._generate(loaded, request, cancelled, lambda _: None),
            timeout=timeout,
        )
        return chat_response(new_completion_id(), self._model_name(request), outcome)

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        request = self._request(body)
        model = self._model_name(request)

        def work(loaded: L, cancelled: threading.Event, emit: Emit) -> None:
            emit(self._generate(loaded, request, cancelled, emit))

        async with aclosing(self.engine.stream(work, timeout=timeout)) as items:
            async for chunk in stream_chunks(items, model):
                yield chunk

    async def warm_up(self, *, timeout: float = 600) -> None:
        """Load the model now (at gateway start) rather than at the first request."""
        await self.engine.warm_up(timeout=timeout)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine = None
            await asyncio.to_thread(EngineThread.release, self._key)
