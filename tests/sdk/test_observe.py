"""@fmops.observe on functions, coroutines, generators and async generators, read back as OTel spans."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import fmops
from fmops import sdk


class Exported:
    """The spans the SDK exported, read after a flush."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        assert sdk.flush(10)
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, ReadableSpan]:
        spans = self.spans()
        named = {s.name: s for s in spans}
        assert len(named) == len(spans), f"span names repeat: {[s.name for s in spans]}"
        return named


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[Exported]:
    monkeypatch.delenv("FMOPS_API_KEY", raising=False)
    exporter = InMemorySpanExporter()
    sdk.configure(exporter=exporter)
    yield Exported(exporter)
    sdk.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def io(span: ReadableSpan, which: str) -> Any:
    attributes = span.attributes or {}
    value = attributes[f"{which}.value"]
    return json.loads(str(value)) if attributes[f"{which}.mime_type"] == "application/json" else value


class Retriever:
    @fmops.observe(kind="retriever")
    def search(self, query: str, top_k: int = 2) -> list[str]:
        return [f"{query}-{i}" for i in range(top_k)]


def test_nested_calls_form_one_trace_with_inputs_and_outputs(exported: Exported) -> None:
    @fmops.observe(name="pipeline")
    def pipeline(question: str) -> str:
        docs = Retriever().search(question, top_k=3)
        return tool(docs)

    @fmops.observe(kind="tool")
    def tool(docs: list[str]) -> str:
        return " | ".join(docs)

    assert pipeline("paris") == "paris-0 | paris-1 | paris-2"

    spans = exported.by_name()
    root, search, leaf = spans["pipeline"], spans["Retriever.search"], spans[tool.__qualname__]
    assert root.parent is None
    assert parent_of(search) == parent_of(leaf) == root.context.span_id
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    assert root.attributes["openinference.span.kind"] == "CHAIN"
    assert search.attributes["openinference.span.kind"] == "RETRIEVER"
    assert leaf.attributes["openinference.span.kind"] == "TOOL"
    assert io(root, "input") == {"question": "paris"}
    assert io(search, "input") == {"query": "paris", "top_k": 3}  # `self` left out
    assert io(search, "output") == ["paris-0", "paris-1", "paris-2"]
    assert root.attributes["output.mime_type"] == "text/plain"
    assert io(root, "output") == "paris-0 | paris-1 | paris-2"
    assert all(s.status.status_code is StatusCode.UNSET for s in spans.values())


def test_an_exception_marks_the_span_failed_and_is_reraised_unchanged(exported: Exported) -> None:
    class Boom(Exception):
        pass

    @fmops.observe()
    def fails(x: int) -> int:
        raise Boom(f"bad {x}")

    @fmops.observe()
    def survives() -> str:
        with pytest.raises(Boom, match="bad 7"):
            fails(7)
        return "recovered"

    assert survives() == "recovered"
    spans = {s.name.rsplit(".", 1)[-1]: s for s in exported.spans()}
    failed = spans["fails"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "Boom: bad 7"
    [event] = failed.events
    assert event.name == "exception"
    assert event.attributes["exception.type"].endswith("Boom")
    assert event.attributes["exception.message"] == "bad 7"
    assert "raise Boom" in event.attributes["exception.stacktrace"]
    assert "output.value" not in failed.attributes
    assert spans["survives"].status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_concurrent_coroutines_each_nest_under_their_own_parent(exported: Exported) -> None:
    @fmops.observe(name="leaf")
    async def leaf(n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 10

    @fmops.observe(name="branch")
    async def branch(n: int) -> int:
        await asyncio.sleep(0.005 * (3 - n))  # interleave the branches
        return await leaf(n)

    @fmops.observe(name="root")
    async def root() -> list[int]:
        return list(await asyncio.gather(branch(1), branch(2)))

    assert await root() == [10, 20]
    spans = exported.spans()
    branches = {io(s, "input")["n"]: s for s in spans if s.name == "branch"}
    leaves = {io(s, "input")["n"]: s for s in spans if s.name == "leaf"}
    [top] = [s for s in spans if s.name == "root"]
    for n in (1, 2):
        assert parent_of(branches[n]) == top.context.span_id
        assert parent_of(leaves[n]) == branches[n].context.span_id
        assert io(leaves[n], "output") == n * 10
    assert io(top, "output") == [10, 20]


def test_a_generator_span_covers_the_iteration_and_keeps_what_it_yielded(exported: Exported) -> None:
    @fmops.observe(name="tokens", kind="llm")
    def tokens(n: int) -> Iterator[str]:
        for i in range(n):
            with fmops.span(f"inside-{i}"):
                pass
            yield f"t{i} "

    @fmops.observe(name="consumer")
    def consumer() -> str:
        out = []
        for token in tokens(3):
            with fmops.span(f"between-{token.strip()}"):  # runs in the consumer, not the generator
                pass
            out.append(token)
        return "".join(out)

    assert consumer() == "t0 t1 t2 "
    spans = exported.by_name()
    gen, top = spans["tokens"], spans["consumer"]
    assert parent_of(gen) == top.context.span_id
    assert io(gen, "output") == "t0 t1 t2 "  # text items are joined, as streamed tokens are
    assert io(gen, "input") == {"n": 3}
    assert all(parent_of(spans[f"inside-{i}"]) == gen.context.span_id for i in range(3))
    assert all(parent_of(spans[f"between-t{i}"]) == top.context.span_id for i in range(3))
    # The generator's span starts before its first item and ends after its last.
    assert gen.start_time <= spans["inside-0"].start_time
    assert gen.end_time >= spans["between-t2"].end_time


def test_a_generator_stopped_early_or_failing_still_ends_its_span(exported: Exported) -> None:
    @fmops.observe(name="numbers")
    def numbers() -> Iterator[dict[str, int]]:
        for i in range(100):
            yield {"i": i}

    @fmops.observe(name="broken")
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("stream cut")

    for item in numbers():
        if item["i"] == 2:
            break
    with pytest.raises(RuntimeError, match="stream cut"):
        list(broken())

    spans = exported.by_name()
    assert io(spans["numbers"], "output") == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert spans["numbers"].status.status_code is StatusCode.UNSET
    assert spans["broken"].status.status_code is StatusCode.ERROR
    assert spans["broken"].status.description == "RuntimeError: stream cut"


def test_values_sent_and_thrown_into_a_generator_reach_it(exported: Exported) -> None:
    @fmops.observe(name="echo")
    def echo() -> Iterator[str]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "recovered"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "got a"
    assert gen.throw(KeyError("x")) == "got recovered"
    gen.close()
    assert io(exported.by_name()["echo"], "output") == "readygot agot recovered"


def test_a_generator_made_inside_a_span_is_its_child_wherever_it_is_consumed(exported: Exported) -> None:
    @fmops.observe(name="stream")
    def stream() -> Iterator[int]:
        yield from range(3)

    @fmops.observe(name="handler")
    def handler() -> Iterator[int]:
        return stream()  # consumed by the caller, after `handler` returned

    assert sum(handler()) == 3
    spans = exported.by_name()
    assert parent_of(spans["stream"]) == spans["handler"].context.span_id


@pytest.mark.anyio
async def test_an_async_generator_span_covers_the_iteration(exported: Exported) -> None:
    @fmops.observe(name="astream", kind="llm")
    async def astream(words: list[str]) -> AsyncIterator[str]:
        for word in words:
            async with fmops.span(f"fetch-{word}"):
                await asyncio.sleep(0)
            yield word

    @fmops.observe(name="abroken")
    async def abroken() -> AsyncIterator[int]:
        yield 1
        raise ValueError("upstream closed")

    @fmops.observe(name="ahandler")
    async def ahandler() -> str:
        parts = [w async for w in astream(["a", "b"])]
        with pytest.raises(ValueError, match="upstream closed"):
            async for _ in abroken():
                pass
        return "".join(parts)

    assert await ahandler() == "ab"
    spans = exported.by_name()
    top = spans["ahandler"].context.span_id
    assert parent_of(spans["astream"]) == parent_of(spans["abroken"]) == top
    assert parent_of(spans["fetch-a"]) == spans["astream"].context.span_id
    assert io(spans["astream"], "output") == "ab"
    assert spans["abroken"].status.status_code is StatusCode.ERROR


def test_span_blocks_set_input_output_attributes_user_and_session(exported: Exported) -> None:
    with fmops.span("request", user="u-1", session_id="s-1", route="/ask", tags=["a", "b"]) as outer:
        outer.set_input({"question": "why"})
        with fmops.span("step", kind="tool", input="raw text", meta={"k": 1}) as inner:
            inner.set_output(["done"])
            assert fmops.current_span() is inner
        assert fmops.current_span() is outer
    assert fmops.current_span() is None

    spans = exported.by_name()
    request, step = spans["request"], spans["step"]
    assert outer.trace_id == inner.trace_id == format(request.context.trace_id, "032x")
    assert inner.span_id == format(step.context.span_id, "016x")
    assert request.attributes["user.id"] == step.attributes["user.id"] == "u-1"  # inherited
    assert request.attributes["session.id"] == step.attributes["session.id"] == "s-1"
    assert request.attributes["route"] == "/ask"
    assert tuple(request.attributes["tags"]) == ("a", "b")
    assert json.loads(step.attributes["meta"]) == {"k": 1}  # not an OTel attribute type: JSON
    assert io(request, "input") == {"question": "why"}
    assert (step.attributes["input.value"], step.attributes["input.mime_type"]) == ("raw text", "text/plain")
    assert io(step, "output") == ["done"]


@pytest.mark.anyio
async def test_async_span_blocks_record_errors(exported: Exported) -> None:
    async def lookup() -> None:
        async with fmops.span("lookup", kind="retriever") as s:
            await asyncio.sleep(0)
            s.set_attribute("attempt", 1)
            raise KeyError("missing")

    with pytest.raises(KeyError):
        await lookup()
    span = exported.by_name()["lookup"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["attempt"] == 1
    assert span.events[0].name == "exception"


def test_capture_can_be_turned_off_and_explicit_output_wins(exported: Exported) -> None:
    @fmops.observe(name="secret", capture_input=False, capture_output=False)
    def secret(password: str) -> str:
        return password[::-1]

    @fmops.observe(name="explicit")
    def explicit() -> str:
        current = fmops.current_span()
        assert current is not None
        current.set_output({"summary": "short"})
        return "a very long value that should not be the output"

    secret("hunter2")
    explicit()
    spans = exported.by_name()
    assert "input.value" not in spans["secret"].attributes
    assert "output.value" not in spans["secret"].attributes
    assert io(spans["explicit"], "output") == {"summary": "short"}


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 42>"


def test_values_json_cannot_hold_become_their_repr(exported: Exported) -> None:
    @fmops.observe(name="plain")
    def plain(obj: Any, tags: set[str], blob: bytes) -> tuple[int, int]:
        return (1, 2)

    plain(Opaque(), {"a"}, b"\x00\x01")
    span = exported.by_name()["plain"]
    assert io(span, "input") == {"obj": "<Opaque 42>", "tags": ["a"], "blob": "<2 bytes>"}
    assert io(span, "output") == [1, 2]


def test_values_past_the_size_limit_are_cut_and_cycles_described() -> None:
    exporter = InMemorySpanExporter()
    sdk.configure(exporter=exporter, max_field_bytes=1_000)
    cyclic: list[Any] = []
    cyclic.append(cyclic)

    @fmops.observe(name="odd")
    def odd(obj: Any, loop: list[Any]) -> str:
        return "x" * 5_000

    odd(Opaque(), cyclic)
    assert sdk.flush(10)
    [span] = exporter.get_finished_spans()
    inputs = span.attributes["input.value"]
    assert span.attributes["input.mime_type"] == "text/plain"  # the cycle made it a repr, not JSON
    assert inputs == "{'obj': <Opaque 42>, 'loop': [[...]]}"
    output = span.attributes["output.value"]
    assert span.attributes["output.mime_type"] == "text/plain"
    assert output == "x" * 1_000 + "… [4000 more bytes cut]"


def test_nesting_follows_contextvars_into_threads(exported: Exported) -> None:
    def work(label: str) -> None:
        with fmops.span(label):
            pass

    with fmops.span("parent"):
        context = contextvars.copy_context()
        copied = threading.Thread(target=context.run, args=(work, "copied"))
        plain = threading.Thread(target=work, args=("plain",))
        copied.start()
        plain.start()
        copied.join()
        plain.join()

    spans = exported.by_name()
    assert parent_of(spans["copied"]) == spans["parent"].context.span_id
    assert spans["plain"].parent is None  # a bare thread starts with an empty context: a new trace


@pytest.mark.anyio
async def test_asyncio_to_thread_keeps_the_parent(exported: Exported) -> None:
    @fmops.observe(name="blocking")
    def blocking() -> int:
        return 1

    async with fmops.span("async-parent"):
        await asyncio.to_thread(blocking)
    spans = exported.by_name()
    assert parent_of(spans["blocking"]) == spans["async-parent"].context.span_id


def test_unknown_kinds_are_refused_when_decorating() -> None:
    with pytest.raises(ValueError, match="unknown span kind 'banana'; use one of agent, chain"):
        fmops.observe(kind="banana")
    with pytest.raises(ValueError, match="unknown span kind"):
        fmops.span("x", kind="banana")


def test_without_an_api_key_tracing_warns_once_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("FMOPS_API_KEY", raising=False)

    @fmops.observe()
    def add(a: int, b: int) -> int:
        with fmops.span("inner") as s:
            s.set_output(a + b)
            inner_trace = s.trace_id
        current = fmops.current_span()
        assert current is not None
        assert current.trace_id == inner_trace
        return a + b

    with caplog.at_level("WARNING", logger="fmops.sdk"):
        assert add(1, 2) == 3
        assert add(3, 4) == 7
    warnings = [r for r in caplog.records if "no API key" in r.getMessage()]
    assert len(warnings) == 1
    assert "FMOPS_API_KEY" in warnings[0].getMessage()
    assert sdk.flush(1)


def test_decorated_functions_keep_their_name_signature_and_coroutine_nature(exported: Exported) -> None:
    @fmops.observe
    def bare(x: int) -> int:
        """Doubles."""
        return 2 * x

    @fmops.observe()
    async def coro(x: int) -> int:
        return x

    assert bare(2) == 4
    assert (bare.__name__, bare.__doc__) == ("bare", "Doubles.")
    assert str(inspect.signature(bare)) == "(x: 'int') -> 'int'"
    assert inspect.iscoroutinefunction(coro)  # frameworks (FastAPI, pytest) look at this
    assert exported.by_name()[bare.__qualname__].attributes["openinference.span.kind"] == "CHAIN"
