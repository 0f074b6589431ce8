"""The SDK against a real server on both backends: traced code lands as span trees, feedback and
errors round-trip, the gateway's span joins the application's trace, and spans are flushed at exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

import fmops
from fmops import sdk
from fmops.sdk.errors import APIConnectionError, AuthenticationError, NotFoundError
from fmops.sdk.models import SpanNode, Trace
from support.databases import postgres_database
from support.mock_upstream import MockUpstream
from support.server import RunningServer, free_port, start_server

# No job workers (faster start and stop); models may point at the local mock upstream over the API.
SERVER_ENV = {"FMOPS_WORKERS": "0", "FMOPS_UPSTREAM_ALLOW_PRIVATE": "true"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("sdk-server")
    if request.param == "sqlite":
        with start_server(home, SERVER_ENV) as running:
            yield running
    else:
        with (
            postgres_database() as url,
            start_server(home, {**SERVER_ENV, "FMOPS_DATABASE_URL": url}) as running,
        ):
            yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[fmops.Client]:
    with fmops.Client(base_url=server.url, api_key=server.admin_key) as made:
        yield made


@pytest.fixture
def traced(server: RunningServer) -> Iterator[None]:
    """This test's spans go to the server."""
    sdk.configure(base_url=server.url, api_key=server.admin_key)
    yield
    sdk.shutdown()


def wait_trace(client: fmops.Client, trace_id: str, spans: int, timeout: float = 15) -> Trace:
    """The trace once `spans` of its spans are queryable (they arrive in background batches)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        try:
            trace = client.traces.get(trace_id)
        except NotFoundError:
            trace = None
        if trace is not None:
            seen = len(list(trace.walk()))
            if seen >= spans:
                return trace
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id}: {seen} of {spans} spans queryable after {timeout}s")


def names(nodes: list[SpanNode]) -> list[str]:
    return [n.name for n in nodes]


@fmops.observe(kind="retriever")
def retrieve(query: str, top_k: int = 2) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"{query} doc {i}"} for i in range(top_k)]


@fmops.observe(kind="tool")
def flaky(attempt: int) -> None:
    raise ConnectionError(f"tool down on attempt {attempt}")


@fmops.observe(kind="llm")
def generate(docs: list[dict[str, Any]]) -> Iterator[str]:
    for doc in docs:
        yield f"[{doc['id']}]"


@fmops.observe(name="answer", kind="agent")
def answer(question: str, session: str) -> str:
    with fmops.span("prepare", user="ada", session_id=session, question_length=len(question)) as s:
        docs = retrieve(question)
        s.set_output({"docs": len(docs)})
        with contextlib.suppress(ConnectionError):
            flaky(1)
        return "".join(generate(docs))


def test_sync_code_becomes_a_span_tree_with_io_and_errors(client: fmops.Client, traced: None) -> None:
    session = uuid.uuid4().hex
    with fmops.span("request", kind="chain") as root:
        assert answer("capital of France", session) == "[0][1]"
    assert client.flush()

    trace = wait_trace(client, root.trace_id, spans=6)
    assert names(trace.spans) == ["request"]
    [agent] = trace.spans[0].children
    assert agent.name == "answer"
    assert agent.input == {"question": "capital of France", "session": session}
    assert agent.output == "[0][1]"
    [prepare] = agent.children
    assert names(prepare.children) == ["retrieve", "flaky", "generate"]  # in start order
    assert prepare.output == {"docs": 2}
    assert prepare.user == "ada"
    assert prepare.session_id == session
    assert prepare.attributes["question_length"] == 17

    fetched, failed, generated = prepare.children
    assert (fetched.kind, failed.kind) == ("retrieval", "tool")
    assert fetched.input == {"query": "capital of France"}
    assert fetched.output == [
        {"id": 0, "text": "capital of France doc 0"},
        {"id": 1, "text": "capital of France doc 1"},
    ]
    assert fetched.user == "ada"
    assert fetched.session_id == session
    assert failed.status == "error"
    assert "tool down on attempt 1" in (failed.status_message or "")
    assert generated.output == "[0][1]"
    assert all(n.status == "ok" for n in trace.walk() if n is not failed)

    page = client.traces.search(session_id=session, kind="tool", limit=10)
    assert [s.span_id for s in page.data] == [failed.span_id]


@fmops.observe(kind="llm")
async def astream(words: list[str]) -> AsyncIterator[str]:
    for word in words:
        await asyncio.sleep(0)
        yield word


@fmops.observe(name="async-step")
async def astep(n: int) -> dict[str, int]:
    await asyncio.sleep(0.01)
    if n == 3:
        raise ValueError("three is not allowed")
    return {"double": n * 2}


@fmops.observe(name="async-answer")
async def async_answer() -> list[Any]:
    results = await asyncio.gather(astep(1), astep(2), astep(3), return_exceptions=True)
    words = [w async for w in astream(["a", "b", "c"])]
    return [r if isinstance(r, dict) else str(r) for r in results] + words


@pytest.mark.anyio
async def test_async_code_and_async_generators(client: fmops.Client, traced: None) -> None:
    async with fmops.span("async-root") as root:
        assert await async_answer() == [{"double": 2}, {"double": 4}, "three is not allowed", "a", "b", "c"]
    assert client.flush()

    trace = await asyncio.to_thread(wait_trace, client, root.trace_id, 6)
    top = trace.find("async-answer")
    assert names(top.children) == ["async-step"] * 3 + ["astream"]
    steps = {n.input["n"]: n for n in top.children if n.name == "async-step"}
    assert [steps[i].output for i in (1, 2)] == [{"double": 2}, {"double": 4}]
    assert steps[3].status == "error"
    assert "three is not allowed" in (steps[3].status_message or "")
    assert trace.find("astream").output == "abc"
    assert trace.find("astream").kind == "llm"


def test_feedback_lands_on_the_trace(client: fmops.Client, traced: None) -> None:
    with fmops.span("scored") as root:
        pass
    client.flush()
    wait_trace(client, root.trace_id, spans=1)

    thumbs = client.feedback(root.trace_id, thumbs=False, comment="wrong city")
    number = client.feedback(root.trace_id, score=0.75, name="helpfulness", span_id=root.span_id)
    label = client.feedback(root.trace_id, label="off-topic", score=2)
    fixed = client.feedback(root.trace_id, corrected_output={"role": "assistant", "content": "Paris."})
    note = client.feedback(root.trace_id, comment="looked fine otherwise")

    assert (thumbs.kind, thumbs.value, thumbs.comment) == ("thumbs", -1, "wrong city")
    assert (number.kind, number.name, number.value, number.span_id) == (
        "number",
        "helpfulness",
        0.75,
        root.span_id,
    )
    assert (label.kind, label.label, label.value) == ("label", "off-topic", 2)
    assert fixed.corrected_output == {"role": "assistant", "content": "Paris."}
    stored = client.traces.feedback(root.trace_id)
    assert [s.id for s in stored] == [s.id for s in (thumbs, number, label, fixed, note)]
    assert {s.trace_id for s in stored} == {root.trace_id}
    assert (
        client.traces.search(feedback="negative", root_only=True, limit=50).data[0].trace_id == root.trace_id
    )

    with pytest.raises(ValueError, match="not thumbs and score"):
        client.feedback(root.trace_id, thumbs=True, score=1)
    with pytest.raises(ValueError, match="give thumbs, score"):
        client.feedback(root.trace_id)


def test_server_errors_are_typed(client: fmops.Client, server: RunningServer) -> None:
    missing = uuid.uuid4().hex
    with pytest.raises(NotFoundError) as not_found:
        client.traces.get(missing)
    assert not_found.value.status == 404
    assert missing in not_found.value.message
    with pytest.raises(NotFoundError):
        client.feedback(missing, thumbs=True)

    with fmops.Client(base_url=server.url, api_key="fmops-not-a-key") as stranger:  # noqa: SIM117
        with pytest.raises(AuthenticationError) as denied:
            stranger.traces.search()
    assert denied.value.status == 401
    assert denied.value.code == "invalid_api_key"

    with fmops.Client(base_url=f"http://127.0.0.1:{free_port()}", api_key="x") as nowhere:  # noqa: SIM117
        with pytest.raises(APIConnectionError, match="cannot reach fmops"):
            nowhere.traces.search()


@pytest.fixture(scope="module")
def mock_model(client: fmops.Client, mock: MockUpstream) -> str:
    alias = f"sdk-mock-{uuid.uuid4().hex[:8]}"
    body = {"alias": alias, "provider": "openai", "model": "m1", "base_url": mock.url}
    client.request("POST", "/api/models", json=body)
    return alias


def test_gateway_calls_join_the_applications_trace(
    client: fmops.Client, traced: None, mock_model: str
) -> None:
    @fmops.observe(name="ask")
    def ask(question: str) -> str:
        reply = client.openai.chat.completions.create(
            model=mock_model, messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content or ""

    with fmops.span("chat-app") as root:
        assert ask("hello?")
    client.flush()

    trace = wait_trace(client, root.trace_id, spans=3)
    asked = trace.find("ask")
    [call] = asked.children
    assert call.model == mock_model
    assert call.kind == "llm"
    assert call.parent_span_id == asked.span_id


@pytest.mark.anyio
async def test_async_streamed_gateway_calls_join_the_trace_too(
    client: fmops.Client, traced: None, mock_model: str
) -> None:
    async with fmops.span("async-chat-app") as root:
        stream = await client.async_openai.chat.completions.create(
            model=mock_model, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    client.flush()

    trace = await asyncio.to_thread(wait_trace, client, root.trace_id, 2)
    [call] = trace.spans[0].children
    assert call.model == mock_model
    assert call.parent_span_id == root.span_id


def test_without_configure_spans_go_where_the_first_client_points(server: RunningServer) -> None:
    with fmops.Client(base_url=server.url, api_key=server.admin_key) as own:
        with fmops.span("client-configured") as root:
            pass
        assert own.flush()
        assert wait_trace(own, root.trace_id, spans=1).spans[0].name == "client-configured"


SCRIPT = """
import fmops

@fmops.observe(name="nightly-job")
def job(n):
    with fmops.span("step") as s:
        print(s.trace_id, flush=True)
    return {"answer": n + 1}

job(41)
# no flush: the spans still queued are sent when the interpreter exits
"""


def test_spans_are_flushed_when_the_process_exits(client: fmops.Client, server: RunningServer) -> None:
    env = {**os.environ, "FMOPS_BASE_URL": server.url, "FMOPS_API_KEY": server.admin_key}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.strip()
    trace = wait_trace(client, trace_id, spans=2)
    assert trace.find("nightly-job").output == {"answer": 42}
    assert names(trace.find("nightly-job").children) == ["step"]


def test_traces_filter_on_guardrail_decisions(client: fmops.Client, mock: MockUpstream) -> None:
    """`blocked_by` / `flagged_by`: the calls a guardrail policy blocked or flagged (its label, or *)."""
    alias = f"sdk-guarded-{uuid.uuid4().hex[:8]}"
    client.request(
        "POST",
        "/api/models",
        json={"alias": alias, "provider": "openai", "model": "m1", "base_url": mock.url},
    )
    for policy in (
        {"name": "deny", "guardrail": "regex", "config": {"patterns": ["forbidden"]}},
        {
            "name": "watch",
            "guardrail": "regex",
            "config": {"patterns": ["mock"]},
            "on": "output",
            "action": "flag",
        },
    ):
        client.request("POST", "/api/policies", json={**policy, "scope": "model", "target": alias})
    with pytest.raises(openai.BadRequestError) as refused:
        client.openai.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "something forbidden"}]
        )
    blocked = refused.value.response.headers["x-fmops-trace-id"]
    answered = client.openai.chat.completions.with_raw_response.create(
        model=alias, messages=[{"role": "user", "content": "hello"}]
    )
    flagged = answered.headers["x-fmops-trace-id"]

    deadline = time.monotonic() + 15  # both calls' spans and their decisions' spans stored
    while len(client.traces.search(model=alias, limit=10).data) < 2 or (
        len(client.traces.search(kind="guardrail", limit=500).data) < 3
    ):
        assert time.monotonic() < deadline, "the calls' spans were not stored in time"
        time.sleep(0.1)

    def found(**filters: Any) -> set[str]:
        return {s.trace_id for s in client.traces.iter(**filters)} & {blocked, flagged}

    assert found(blocked_by=f"model:{alias}/deny") == {blocked}
    assert found(flagged_by=f"model:{alias}/watch") == {flagged}
    assert found(flagged_by="*", model=alias) == {flagged}
    assert found(blocked_by=f"model:{alias}/watch") == set()
