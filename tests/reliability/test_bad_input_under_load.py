"""Issue 21, "Bad input": under load, every bad request gets the answer it gets from an idle server.

The hot routes (/v1/chat/completions, /v1/traces) are answered by the fast path in front of FastAPI
(server/fastpath.py); nothing that fails there may pass, or fail differently, when the server is
busy. The test asks the idle server each bad request once and keeps its answer; then, while
`CLIENTS` callers keep good chat calls (plain and streamed) and OTLP batches going, it sends each bad
request again `REPLAYS` times, interleaved, and asserts the same answer every time: status, error
type, code and param, the message with numbers and key ids masked (a rate limit's "used 5 ... try
again in 57.3s" moves), Retry-After present or not, WWW-Authenticate. During the load it also sends a burst
of concurrent calls on a fresh key with a requests-per-minute limit: exactly that many may pass.

Then: every good call was answered 2xx, the upstream saw exactly the calls answered 200 (no bad
request reached it), and every good call and every span sent is in the store once the writer flushed.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from fmops.settings import Settings
from support.gateway import wait_for
from support.mock_upstream import REPLY, MockUpstream
from support.otlp import json_body, json_span, trace_id
from support.reliability import add_models, call, chat_body
from support.server import RunningServer

# The reliability server runs with the default body limit (conftest.py sets no FMOPS_MAX_BODY_BYTES).
LIMIT: int = Settings.model_fields["max_body_bytes"].default
MODEL = "bad-input"
UPSTREAM_MODEL = "ok-bad-input"
# Limits count in a sliding minute (counters/memory.py): a key of 1 request per minute, spent once,
# refuses every call until the end of the next whole minute, at least 60 s later, whenever it was
# spent; the test needs well under that.
SPENT_RPM = 1
BURST_RPM = 5
CLIENTS = 24  # good callers: 20 chat (every other one streamed), 4 OTLP
OTLP_CLIENTS = 4
SPANS_PER_BATCH = 5
REPLAYS = 8  # each bad request, under load
BIG_REPLAYS = 2  # the bodies over the limit (16 MiB each): a few suffice, and they cost
BURST = 4 * BURST_RPM  # concurrent calls on a fresh rate-limited key: exactly BURST_RPM pass
MIN_LOAD_SECONDS = 3.0
IDS = re.compile(r"\b[0-9a-f]{32}\b")  # a key's id, in limit messages
DIGITS = re.compile(r"\d+")
JSON = {"Content-Type": "application/json"}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
# What the idle server answers: (status, error code), or the error type where the code is null.
INVALID = (400, "invalid_request")
UNPARSED = (400, "invalid_request_error")  # a body that cannot be read at all
TOO_LARGE = (413, "payload_too_large")
BAD_KEY = (401, "invalid_api_key")
RATE_LIMITED = (429, "rate_limit_exceeded")
MEDIA = (415, "unsupported_media_type")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _chunked(total: int) -> AsyncIterator[bytes]:
    """A body of `total` bytes sent without Content-Length: the server must count as it reads."""
    chunk = b"x" * (256 * 1024)
    sent = 0
    while sent < total:
        part = chunk[: total - sent]
        sent += len(part)
        yield part


@dataclass(frozen=True)
class Bad:
    """One bad request and what the idle server must answer (status, error code)."""

    name: str
    path: str
    headers: dict[str, str]
    body: bytes | Callable[[], AsyncIterator[bytes]]
    expect: tuple[int, str]
    replays: int = REPLAYS


@dataclass(frozen=True)
class Answer:
    """The stable part of an error answer: what a client can act on, request ids and numbers aside."""

    status: int
    content_type: str
    error_type: str | None
    code: str | None
    param: str | None
    message: str
    retry_after: bool
    www_authenticate: str | None
    raw: str = field(compare=False, default="")  # the message as sent, for the failure's report


async def ask(client: httpx.AsyncClient, bad: Bad) -> Answer:
    body = bad.body() if callable(bad.body) else bad.body
    return answer_of(await client.post(bad.path, headers=bad.headers, content=body))


def answer_of(resp: httpx.Response) -> Answer:
    try:
        error = orjson.loads(resp.content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        error = {"message": "not an error body: " + resp.text[:200]}
    return Answer(
        status=resp.status_code,
        content_type=resp.headers.get("content-type", ""),
        error_type=error.get("type"),
        code=error.get("code"),
        param=error.get("param"),
        message=DIGITS.sub("#", IDS.sub("<id>", str(error.get("message")))),
        retry_after="retry-after" in resp.headers,
        www_authenticate=resp.headers.get("www-authenticate"),
        raw=str(error.get("message")),
    )


@dataclass
class Keys:
    app: str  # a consumer key without limits: the good load
    rpm: str  # SPENT_RPM per minute, spent at idle: every later call is over the limit
    burst: str  # BURST_RPM per minute, first used by the burst under load
    budget: str  # a budget of 0 this month: spent before the first call
    tpm: str  # 50 tokens per minute: a call asking for 1,000 is too large whatever the window
    revoked: str


def new_key(admin: httpx.Client, name: str, limits: dict[str, Any] | None = None) -> tuple[str, str]:
    created = admin.post("/api/keys", json={"name": name, "role": "consumer"})
    assert created.status_code == 201, created.text
    body = created.json()
    if limits:
        changed = admin.patch(f"/api/keys/{body['id']}/limits", json=limits)
        assert changed.status_code == 200, changed.text
    return str(body["key"]), str(body["id"])


def make_keys(server: RunningServer) -> Keys:
    with server.client() as admin:
        revoked, revoked_id = new_key(admin, "bad-input-revoked")
        assert admin.delete(f"/api/keys/{revoked_id}").status_code == 200  # never used: never cached
        return Keys(
            app=new_key(admin, "bad-input-app")[0],
            rpm=new_key(admin, "bad-input-rpm", {"rpm_limit": SPENT_RPM})[0],
            burst=new_key(admin, "bad-input-burst", {"rpm_limit": BURST_RPM})[0],
            budget=new_key(admin, "bad-input-budget", {"budget": 0.0, "budget_period": "month"})[0],
            tpm=new_key(admin, "bad-input-tpm", {"tpm_limit": 50})[0],
            revoked=revoked,
        )


def bad_requests(keys: Keys) -> list[Bad]:
    chat, traces = "/v1/chat/completions", "/v1/traces"
    app = {**bearer(keys.app), **JSON}
    gzipped = {**app, "Content-Encoding": "gzip"}
    good_chat = orjson.dumps(chat_body(MODEL))
    good_spans = json_body(json_span("bad-input"))
    unknown = "fmk-" + "0" * 40  # well formed, in no database
    big = LIMIT + 1
    bomb = gzip.compress(bytes(LIMIT + 1024 * 1024))  # about 17 KB that inflate past the limit

    def as_(key: str) -> dict[str, str]:
        return {**bearer(key), **JSON}

    return [
        # malformed and invalid bodies
        Bad("chat: not JSON", chat, app, b'{"model": "x", "messages": [', INVALID),
        Bad("chat: not UTF-8", chat, app, b'{"model": "\xff\xfe"}', UNPARSED),
        Bad("chat: empty body", chat, app, b"", INVALID),
        Bad("chat: a JSON array", chat, app, b"[1, 2]", INVALID),
        Bad("chat: no messages", chat, app, orjson.dumps({"model": MODEL}), INVALID),
        Bad("chat: messages a string", chat, app, orjson.dumps({"model": MODEL, "messages": "hi"}), INVALID),
        Bad(
            "chat: no such model",
            chat,
            app,
            orjson.dumps(chat_body("no-such-model")),
            (404, "model_not_found"),
        ),
        # bodies over the limit: declared (refused before reading) and chunked (refused while reading)
        Bad("chat: declared over the limit", chat, app, b"x" * big, TOO_LARGE, BIG_REPLAYS),
        Bad("chat: chunked over the limit", chat, app, lambda: _chunked(big), TOO_LARGE, BIG_REPLAYS),
        Bad("traces: declared over the limit", traces, app, b"x" * big, TOO_LARGE, BIG_REPLAYS),
        Bad("traces: chunked over the limit", traces, app, lambda: _chunked(big), TOO_LARGE, BIG_REPLAYS),
        Bad("traces: gzip bomb", traces, gzipped, bomb, TOO_LARGE),
        # bad keys, on both routes
        *(
            Bad(f"{route}: {what}", path, {**headers, **JSON}, body, BAD_KEY)
            for route, path, body in (("chat", chat, good_chat), ("traces", traces, good_spans))
            for what, headers in (
                ("no Authorization", {}),
                ("not Bearer", {"Authorization": f"Basic {keys.app}"}),
                ("malformed key", bearer("fmk-short")),
                ("unknown key", bearer(unknown)),
                ("revoked key", bearer(keys.revoked)),
            )
        ),
        # over the limits
        Bad("chat: over the rpm", chat, as_(keys.rpm), good_chat, RATE_LIMITED),
        Bad(
            "chat: over the rpm, streamed",
            chat,
            as_(keys.rpm),
            orjson.dumps(chat_body(MODEL, stream=True)),
            RATE_LIMITED,
        ),
        Bad("chat: budget spent", chat, as_(keys.budget), good_chat, (429, "insufficient_quota")),
        Bad(
            "chat: larger than the tpm",
            chat,
            as_(keys.tpm),
            orjson.dumps(chat_body(MODEL, max_tokens=1000)),
            (400, "request_too_large"),
        ),
        # OTLP bodies and media types
        Bad("traces: bad protobuf", traces, {**app, **PROTOBUF}, b"\xff\xfe garbage", UNPARSED),
        Bad("traces: bad JSON", traces, app, b'{"resourceSpans": [', UNPARSED),
        Bad("traces: JSON not an object", traces, app, b"[]", UNPARSED),
        Bad("traces: not gzip", traces, gzipped, b"not gzip", UNPARSED),
        Bad("traces: text/plain", traces, {**app, "Content-Type": "text/plain"}, good_spans, MEDIA),
        Bad("traces: no Content-Type", traces, bearer(keys.app), good_spans, MEDIA),
        Bad("traces: brotli", traces, {**app, "Content-Encoding": "br"}, good_spans, MEDIA),
    ]


@dataclass
class Good:
    """What the good load got: failures (kept whole, to show), trace ids of the 2xx answers."""

    chat: int = 0
    batches: int = 0
    failures: list[str] = field(default_factory=list)
    traces: set[str] = field(default_factory=set)  # gateway calls answered 200
    sent: set[str] = field(default_factory=set)  # OTLP traces accepted

    @property
    def total(self) -> int:
        return self.chat + self.batches


async def chat_caller(client: httpx.AsyncClient, stream: bool, stop: asyncio.Event, good: Good) -> None:
    while not stop.is_set():
        outcome = await call(client, chat_body(MODEL, stream=stream))
        if outcome.status != 200 or outcome.error is not None or outcome.text != REPLY:
            good.failures.append(f"chat stream={stream}: {outcome}")
        else:
            assert outcome.trace_id
            good.traces.add(outcome.trace_id)
            good.chat += 1


async def otlp_caller(client: httpx.AsyncClient, stop: asyncio.Event, good: Good) -> None:
    while not stop.is_set():
        trace = trace_id()
        body = json_body(*(json_span(f"load-{i}", trace=trace) for i in range(SPANS_PER_BATCH)))
        resp = await client.post("/v1/traces", content=body, headers=JSON)
        if resp.status_code != 200 or resp.json() != {}:  # {}: no span rejected
            good.failures.append(f"otlp: {resp.status_code} {resp.text[:300]}")
        else:
            good.sent.add(trace)
            good.batches += 1


@dataclass
class Run:
    idle: dict[str, Answer]
    loaded: list[tuple[str, Answer]]
    burst: list[tuple[int, Answer | None]]
    good: Good
    during: int  # good calls answered while the bad requests were being sent
    seconds: float


async def drive(server: RunningServer, keys: Keys, bads: list[Bad]) -> Run:
    limits = httpx.Limits(max_connections=CLIENTS + 8, max_keepalive_connections=CLIENTS + 8)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=bearer(keys.app), timeout=60, limits=limits) as load,
        httpx.AsyncClient(base_url=server.url, timeout=60) as raw,
    ):
        good = Good()
        # Idle: spend the rpm key's minute, then ask each bad request once.
        for _ in range(SPENT_RPM):
            resp = await raw.post("/v1/chat/completions", headers=bearer(keys.rpm), json=chat_body(MODEL))
            assert resp.status_code == 200, resp.text
            good.traces.add(resp.headers["x-fmops-trace-id"])
        idle = {bad.name: await ask(raw, bad) for bad in bads}

        # Under load: the callers first, then the bad requests from two tasks and the burst.
        stop = asyncio.Event()
        callers = [
            asyncio.create_task(chat_caller(load, stream=i % 2 == 1, stop=stop, good=good))
            for i in range(CLIENTS - OTLP_CLIENTS)
        ] + [asyncio.create_task(otlp_caller(load, stop, good)) for _ in range(OTLP_CLIENTS)]
        started = time.monotonic()
        while good.total < CLIENTS and not good.failures and time.monotonic() - started < 30:
            await asyncio.sleep(0.01)  # about every caller has had an answer: the load is on
        before = good.total
        order = [bad for bad in bads for _ in range(bad.replays)]
        random.Random(21).shuffle(order)
        loaded: list[tuple[str, Answer]] = []

        async def replay(share: list[Bad]) -> None:
            for bad in share:
                loaded.append((bad.name, await ask(raw, bad)))

        async def one_of_burst() -> tuple[int, Answer | None]:
            resp = await raw.post("/v1/chat/completions", headers=bearer(keys.burst), json=chat_body(MODEL))
            if resp.status_code != 200:
                return resp.status_code, answer_of(resp)
            good.traces.add(resp.headers["x-fmops-trace-id"])
            return 200, None

        async def burst() -> list[tuple[int, Answer | None]]:
            await asyncio.sleep(0.2)  # among the replays
            return list(await asyncio.gather(*(one_of_burst() for _ in range(BURST))))

        burst_task = asyncio.create_task(burst())
        await asyncio.gather(replay(order[0::2]), replay(order[1::2]))
        bursted = await burst_task
        during = good.total - before
        while time.monotonic() - started < MIN_LOAD_SECONDS:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*callers)
        return Run(idle, loaded, bursted, good, during, time.monotonic() - started)


def stored_traces(server: RunningServer) -> set[str]:
    with sqlite3.connect(server.home / "fmops.db", timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT trace_id FROM spans")}


@pytest.fixture(scope="module")
def keys(gateway: RunningServer, upstream: MockUpstream) -> Keys:
    add_models(gateway, upstream.url, {MODEL: {"model": UPSTREAM_MODEL, "max_retries": 0}})
    return make_keys(gateway)


def test_bad_input_keeps_its_answer_under_load(
    gateway: RunningServer, upstream: MockUpstream, keys: Keys
) -> None:
    bads = bad_requests(keys)
    run = asyncio.run(drive(gateway, keys, bads))
    good = run.good
    print(
        f"{len(run.loaded)} bad requests ({len(bads)} kinds) under {CLIENTS} callers: {good.chat} good chat "
        f"calls and {good.batches} OTLP batches in {run.seconds:.1f}s ({run.during} while the bad ones ran)"
    )

    # Idle: each bad request is a clear 4xx in the error shape, the one it is known to be.
    for bad in bads:
        seen = run.idle[bad.name]
        assert (seen.status, seen.code or seen.error_type) == bad.expect, (bad.name, seen)
        assert seen.content_type == "application/json", (bad.name, seen)
    assert all(str(LIMIT) in run.idle[b.name].raw for b in bads if b.replays == BIG_REPLAYS)
    assert all(run.idle[b.name].retry_after for b in bads if b.expect[0] == 429)
    assert all(run.idle[b.name].www_authenticate == "Bearer" for b in bads if b.expect[0] == 401)

    # Under load: the same answer, every time.
    assert Counter(name for name, _ in run.loaded) == {bad.name: bad.replays for bad in bads}
    differ = [(name, run.idle[name], seen) for name, seen in run.loaded if seen != run.idle[name]]
    assert not differ, "\n".join(
        f"{name}: idle {idle}\n  under load {seen}" for name, idle, seen in differ[:10]
    )

    # A burst on a fresh limited key: exactly BURST_RPM pass; the others get the limited key's answer.
    statuses = Counter(status for status, _ in run.burst)
    assert statuses == {200: BURST_RPM, 429: BURST - BURST_RPM}, statuses
    over = {answer for _, answer in run.burst if answer is not None}
    assert over == {run.idle["chat: over the rpm"]}, over

    # The good load: all answered, and it ran while the bad requests did.
    assert not good.failures, good.failures[:5]
    assert run.during > 0
    # The upstream saw the calls answered 200 and nothing else: no bad request got through.
    reached = sum(1 for r in upstream.state.requests if r["body"].get("model") == UPSTREAM_MODEL)
    assert reached == good.chat + SPENT_RPM + BURST_RPM, (reached, good.chat)
    # Every good call and every span sent is in the store once the writer has flushed.
    expected = good.traces | good.sent
    wait_for(lambda: expected <= stored_traces(gateway), timeout=20)
    missing = expected - stored_traces(gateway)
    assert not missing, f"{len(missing)} of {len(expected)} traces are not in the store"
