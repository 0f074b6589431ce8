"""`with fmops.span(...)` / `async with fmops.span(...)`: trace a block of code."""

from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import Any

from fmops.sdk.handle import SpanHandle, activate, current_span, deactivate, finish, span_kind, start

_UNSET: Any = object()


class span:  # lower case: used like a function, `with fmops.span("retrieve") as s:`
    """A span around a block; the block's exceptions are recorded on it and re-raised.

        with fmops.span("retrieve", kind="retriever", top_k=5) as s:
            s.set_input(query)
            s.set_output(documents := search(query))

    `user` and `session_id` become `user.id` / `session.id` and are inherited by the spans inside;
    other keyword arguments become attributes. Works with `async with` too.
    """

    __slots__ = ("_attributes", "_handle", "_input", "_kind", "_name", "_session_id", "_token", "_user")

    def __init__(
        self,
        name: str,
        *,
        kind: str = "chain",
        input: Any = _UNSET,
        user: str | None = None,
        session_id: str | None = None,
        **attributes: Any,
    ) -> None:
        self._name = name
        self._kind = span_kind(kind)
        self._input = input
        self._user = user
        self._session_id = session_id
        self._attributes = attributes
        self._handle: SpanHandle | None = None
        self._token: Token[SpanHandle | None] | None = None

    def __enter__(self) -> SpanHandle:
        if self._handle is not None:
            raise RuntimeError("an fmops.span(...) can be entered once; make a new one for each block")
        handle = start(
            self._name,
            self._kind,
            parent=current_span(),
            user=self._user,
            session_id=self._session_id,
            attributes=self._attributes,
        )
        if self._input is not _UNSET:
            handle.set_input(self._input)
        self._handle = handle
        self._token = activate(handle)
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            deactivate(self._token)
            self._token = None
        if self._handle is not None:
            finish(self._handle, error=None if isinstance(exc, GeneratorExit) else exc)

    async def __aenter__(self) -> SpanHandle:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
