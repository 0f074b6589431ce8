"""`@fmops.observe()`: trace a function, coroutine, generator or async generator as one span.

The span's input is the call's arguments (by parameter name, without `self`/`cls`) and its output
the return value; for a generator the span covers the whole iteration and its output is what was
yielded (joined when every item is text, as streamed tokens are; at most `MAX_ITEMS` kept). An
exception marks the span failed, with an `exception` event, and is re-raised unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any, TypeVar, cast, overload

from fmops.sdk.handle import SpanHandle, activate, current_span, deactivate, finish, span_kind, start

F = TypeVar("F", bound=Callable[..., Any])
MAX_ITEMS = 1_000


@overload
def observe(func: F, /) -> F: ...


@overload
def observe(
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_input: bool = True,
    capture_output: bool = True,
) -> Callable[[F], F]: ...


def observe(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_input: bool = True,
    capture_output: bool = True,
) -> Any:
    """Trace each call of the decorated function as a span named `name` (default: its qualified name).

        @fmops.observe(kind="tool")
        def search(query: str, top_k: int = 5) -> list[str]: ...

    `kind` is the OpenInference span kind (chain, tool, llm, retriever, agent, embedding, …).
    Turn off `capture_input` / `capture_output` for values that must not leave the process.
    """
    otel_kind = span_kind(kind)

    def decorate(fn: F) -> F:
        traced = _Traced(fn, name or fn.__qualname__, otel_kind, capture_input, capture_output)
        if inspect.iscoroutinefunction(fn):
            # A coroutine function still, for frameworks that look (FastAPI, pytest, …).
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await traced.coroutine(*args, **kwargs)
        else:
            # Generators: a plain function that returns the traced generator, so the parent span
            # is the one current at the call, not at the first next().
            call = (
                traced.async_generator
                if inspect.isasyncgenfunction(fn)
                else traced.generator
                if inspect.isgeneratorfunction(fn)
                else traced.function
            )

            def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return call(*args, **kwargs)

        return cast(F, functools.wraps(fn)(wrapper))

    return decorate(func) if func is not None else decorate


class _Traced:
    """What a decorated function needs at each call; one per decorated function."""

    def __init__(
        self, fn: Callable[..., Any], name: str, kind: str, capture_input: bool, capture_output: bool
    ) -> None:
        self.fn = fn
        self.name = name
        self.kind = kind
        self.capture_input = capture_input
        self.capture_output = capture_output
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins and C extensions have none
            self.signature = None
        params = list(self.signature.parameters) if self.signature else []
        self.skip_first = bool(params) and params[0] in ("self", "cls")

    def _open(self, parent: SpanHandle | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SpanHandle:
        handle = start(self.name, self.kind, parent=parent)
        if self.capture_input:
            handle.set_input(self._arguments(args, kwargs))
        return handle

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.signature is None:
            return {"args": list(args), "kwargs": kwargs}
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:  # a wrong call: the function itself raises the TypeError
            return {"args": list(args), "kwargs": kwargs}
        arguments = dict(bound.arguments)
        if self.skip_first and args:
            arguments.pop(next(iter(self.signature.parameters)), None)
        return arguments

    def _close(self, handle: SpanHandle, output: Any, error: BaseException | None) -> None:
        if error is None and self.capture_output and not handle._output_set:
            handle.set_output(output)
        finish(handle, error)

    def function(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._open(current_span(), args, kwargs)
        token = activate(handle)
        try:
            result = self.fn(*args, **kwargs)
        except BaseException as error:
            deactivate(token)
            self._close(handle, None, error)
            raise
        deactivate(token)
        self._close(handle, result, None)
        return result

    async def coroutine(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._open(current_span(), args, kwargs)
        token = activate(handle)
        try:
            result = await cast(Awaitable[Any], self.fn(*args, **kwargs))
        except BaseException as error:
            deactivate(token)
            self._close(handle, None, error)
            raise
        deactivate(token)
        self._close(handle, result, None)
        return result

    def generator(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        # The parent is the span current where the generator is made, even when it is iterated
        # elsewhere (e.g. returned by an observed function and consumed by its caller).
        return self._generator(current_span(), args, kwargs)

    def _generator(
        self, parent: SpanHandle | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Generator[Any, Any, Any]:
        # Opened on the first next(), so a generator that is never iterated leaves no open span.
        handle = self._open(parent, args, kwargs)
        items = _Items()
        error: BaseException | None = None
        try:
            inner = cast(Generator[Any, Any, Any], self.fn(*args, **kwargs))
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                # Current only while the generator's own code runs: between items the consumer's
                # code runs, and must not see this span as its parent.
                token = activate(handle)
                try:
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
                except StopIteration as stop:
                    return stop.value
                finally:
                    deactivate(token)
                items.add(item)
                try:
                    sent, thrown = (yield item), None
                except GeneratorExit:
                    inner.close()  # the consumer stopped early: a normal end
                    raise
                except BaseException as exc:
                    sent, thrown = None, exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._close(handle, items.output(), error)

    def async_generator(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        return self._async_generator(current_span(), args, kwargs)

    async def _async_generator(
        self, parent: SpanHandle | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncGenerator[Any, Any]:
        handle = self._open(parent, args, kwargs)
        items = _Items()
        error: BaseException | None = None
        try:
            inner = cast(AsyncGenerator[Any, Any], self.fn(*args, **kwargs))
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = activate(handle)
                try:
                    item = await (inner.asend(sent) if thrown is None else inner.athrow(thrown))
                except StopAsyncIteration:
                    return
                finally:
                    deactivate(token)
                items.add(item)
                try:
                    sent, thrown = (yield item), None
                except GeneratorExit:
                    await inner.aclose()
                    raise
                except BaseException as exc:
                    sent, thrown = None, exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._close(handle, items.output(), error)


class _Items:
    """What a generator yielded, up to MAX_ITEMS."""

    __slots__ = ("count", "kept")

    def __init__(self) -> None:
        self.kept: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.count <= MAX_ITEMS:
            self.kept.append(item)

    def output(self) -> Any:
        if self.kept and all(isinstance(i, str) for i in self.kept):
            text = "".join(self.kept)
            return text if self.count <= MAX_ITEMS else text + f"… [{self.count - MAX_ITEMS} more items]"
        return self.kept
