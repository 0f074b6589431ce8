"""The gateway's contract: the official `openai` SDK, pointed at a real `fmops up`, works unchanged."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from support.gateway import fmops, gateway_server, openai_model, read_span, sdk
from support.mock_upstream import REPLY, MockUpstream
from support.server import RunningServer

UPSTREAM_KEY = "sk-upstream-SECRET-4f9a8b7c6d5e"
PRICES = ["--input-price", "2", "--output-price", "4"]  # per 1M tokens
MESSAGES: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"}]


@pytest.fixture(scope="module")
def server(mock: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("gateway-contract")
    with gateway_server(home) as running:
        args = openai_model("upstream-chat-1", mock.url, *PRICES, api_key=UPSTREAM_KEY)
        added = fmops(home, "models", "add", "chat", *args)
        assert added.returncode == 0, added.stderr
        assert UPSTREAM_KEY not in added.stdout + added.stderr
        yield running


@pytest.fixture(autouse=True)
def _fresh_mock(mock: MockUpstream) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with sdk(server) as running:
        yield running


@pytest.fixture(scope="module")
def admin_key_id(server: RunningServer) -> str:
    with server.client() as http:
        key_id: str = http.get("/api/me").json()["key_id"]
    return key_id


def _cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * 2 + output_tokens * 4) / 1_000_000


# --- chat -------------------------------------------------------------------------------------


def test_non_streaming_completion(
    client: openai.OpenAI, server: RunningServer, mock: MockUpstream, admin_key_id: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, user="end-user-7", temperature=0.2
    )
    trace_id = raw.headers["x-fmops-trace-id"]
    assert len(trace_id) == 32
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 4
    assert completion.usage.completion_tokens == len(REPLY.split())

    (sent,) = mock.state.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "upstream-chat-1"  # the provider-side id, not the alias
    assert sent["body"]["messages"] == MESSAGES
    assert sent["body"]["temperature"] == 0.2
    assert sent["body"]["stream"] is False
    assert sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"  # the stored key

    span = read_span(server, trace_id)
    assert span["kind"] == "llm"
    assert span["status"] == "ok"
    assert span["model"] == "chat"
    assert span["provider"] == "openai"
    assert span["response_model"] == "chat"
    assert span["input"]["messages"] == MESSAGES
    assert span["input"]["params"]["temperature"] == 0.2
    assert span["output"] == {"role": "assistant", "content": REPLY}
    assert span["input_tokens"] == 4
    assert span["output_tokens"] == 5
    assert span["cost"] == pytest.approx(_cost(4, 5))
    assert span["latency_ms"] > 0
    assert span["ttft_ms"] is None
    assert span["key_id"] == admin_key_id
    assert span["user"] == "end-user-7"
    assert span["attributes"]["gen_ai.request.model"] == "chat"
    assert span["attributes"]["gen_ai.system"] == "openai"


def test_streaming_completion(
    client: openai.OpenAI, server: RunningServer, mock: MockUpstream, admin_key_id: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, stream=True, user="streamer"
    )
    trace_id = raw.headers["x-fmops-trace-id"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert len(chunks) > 2
    assert all(c.object == "chat.completion.chunk" and c.model == "chat" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Without stream_options.include_usage there is no usage chunk (though the gateway asks upstream).
    assert all(c.usage is None and c.choices for c in chunks)
    (sent,) = mock.state.requests
    assert sent["body"]["stream"] is True
    assert sent["body"]["stream_options"] == {"include_usage": True}

    span = read_span(server, trace_id)
    assert span["status"] == "ok"
    assert span["output"]["content"] == REPLY
    assert span["input_tokens"] == 4
    assert span["output_tokens"] == 5
    assert span["cost"] == pytest.approx(_cost(4, 5))
    assert span["ttft_ms"] is not None
    assert 0 < span["ttft_ms"] <= span["latency_ms"]
    assert span["user"] == "streamer"
    assert span["key_id"] == admin_key_id


def test_stream_with_include_usage_ends_with_a_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 5)
    assert all(c.usage is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == REPLY


def test_raw_stream_ends_with_done(server: RunningServer) -> None:
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["x-fmops-trace-id"]
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert events.count("data: [DONE]") == 1
    parsed = [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join((p["choices"][0]["delta"].get("content") or "") for p in parsed) == REPLY


def test_response_format_and_tools_are_forwarded_unchanged(client: openai.OpenAI, mock: MockUpstream) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "note": {"type": ["string", "null"], "default": None},
                },
                "required": ["city", "note"],
                "additionalProperties": False,
            },
        },
    }
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        }
    ]
    tool_choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        response_format=response_format,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=False,
        seed=7,
        stop=["\n\n"],
    )
    (sent,) = mock.state.requests
    assert sent["body"]["response_format"] == response_format
    assert sent["body"]["tools"] == tools
    assert sent["body"]["tool_choice"] == tool_choice
    assert sent["body"]["parallel_tool_calls"] is False
    assert sent["body"]["seed"] == 7
    assert sent["body"]["stop"] == ["\n\n"]


def test_upstream_key_never_leaves_the_server(client: openai.OpenAI, server: RunningServer) -> None:
    seen: list[str] = []
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    seen.append(raw.http_response.text)
    seen.append(str(dict(raw.headers)))
    with server.client() as http:
        for path in ("/api/models", "/api/models/chat", "/v1/models", "/v1/models/chat"):
            resp = http.get(path)
            assert resp.status_code == 200, resp.text
            seen.append(resp.text)
        listed = http.get("/api/models/chat").json()
        assert listed["api_key_set"] is True
        assert "api_key" not in listed
    read_span(server, raw.headers["x-fmops-trace-id"])
    shown = fmops(server.home, "models", "show", "chat")
    assert shown.returncode == 0, shown.stderr
    seen += [shown.stdout, shown.stderr, server.log_text()]
    db = server.home / "fmops.db"
    stored = b"".join(p.read_bytes() for p in (db, db.with_name("fmops.db-wal")) if p.exists())
    assert UPSTREAM_KEY.encode() not in stored  # encrypted at rest, never copied into spans
    for text in seen:
        assert UPSTREAM_KEY not in text
        assert "SECRET-4f9a" not in text


# --- models and embeddings --------------------------------------------------------------------


def test_list_and_retrieve_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "chat" in ids
    assert ids == sorted(ids)
    assert all(m.object == "model" for m in models.data)
    chat = client.models.retrieve("chat")
    assert chat.id == "chat"
    assert chat.owned_by == "openai"
    assert chat.created > 0
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert "no-such-model" in caught.value.message


def test_embeddings_float(client: openai.OpenAI, server: RunningServer, mock: MockUpstream) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="chat", input=["a", "abc"], encoding_format="float", user="embed-user"
    )
    result = raw.parse()
    assert result.model == "chat"
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == [1.0, 0.0, 1.0]
    assert result.data[1].embedding == [3.0, 1.0, 1.0]
    assert result.usage.prompt_tokens == 2
    (sent,) = mock.state.requests
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"]["model"] == "upstream-chat-1"
    assert sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    span = read_span(server, raw.headers["x-fmops-trace-id"])
    assert span["kind"] == "embedding"
    assert span["status"] == "ok"
    assert span["model"] == "chat"
    assert span["provider"] == "openai"
    assert span["user"] == "embed-user"
    assert span["input_tokens"] == 2


def test_embeddings_base64_sdk_default(client: openai.OpenAI, server: RunningServer) -> None:
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    result = client.embeddings.create(model="chat", input="abcd")
    assert result.data[0].embedding == [4.0, 0.0, 1.0]
    body = {"model": "chat", "input": ["ab", "c"], "encoding_format": "base64"}
    with server.client() as http:
        data = http.post("/v1/embeddings", json=body).json()["data"]
    vectors = [struct.unpack("<3f", base64.b64decode(d["embedding"])) for d in data]
    assert vectors == [(2.0, 0.0, 1.0), (1.0, 1.0, 1.0)]


# --- the terminal chat ------------------------------------------------------------------------


def test_fmops_chat_prints_the_streamed_answer(server: RunningServer, mock: MockUpstream) -> None:
    done = fmops(server.home, "chat", "chat", "-m", "hi", "--url", server.url, "--api-key", server.admin_key)
    assert done.returncode == 0, done.stderr
    assert REPLY in done.stdout
    (sent,) = mock.state.requests
    assert sent["body"]["stream"] is True
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]


# --- sampling extras of OpenAI-compatible local servers ----------------------------------------

EXTRAS = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "seed": 7}


@pytest.mark.parametrize("stream", [False, True])
def test_sampling_extras_reach_an_openai_compatible_upstream(
    client: openai.OpenAI, mock: MockUpstream, stream: bool
) -> None:
    # vLLM's names, and llama.cpp's `repeat_penalty`, as the SDK sends them (extra_body).
    for extras in (EXTRAS, {"repeat_penalty": 1.2}):
        mock.reset()
        answer = client.chat.completions.create(
            model="chat", messages=MESSAGES, stream=stream, extra_body=extras
        )
        if stream:
            list(answer)  # type: ignore[arg-type]
        (sent,) = mock.state.requests
        assert {k: sent["body"].get(k) for k in extras} == extras


@pytest.mark.parametrize(
    ("extras", "param", "fragment"),
    [
        ({"top_k": -2}, "top_k", "greater than or equal to -1"),
        ({"min_p": 1.5}, "min_p", "less than or equal to 1"),
        ({"repetition_penalty": 0}, "repetition_penalty", "greater than 0"),
        ({"repetition_penalty": 1.1, "repeat_penalty": 1.3}, None, "two names for one setting"),
        ({"top_c": 1}, "top_c", "Extra inputs are not permitted"),  # a typo is still a 400
    ],
)
def test_bad_sampling_extras_are_400s_naming_the_field(
    client: openai.OpenAI, mock: MockUpstream, extras: dict[str, Any], param: str | None, fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=MESSAGES, extra_body=extras)
    error = caught.value.body
    assert isinstance(error, dict)
    assert fragment in error["message"]
    if param is not None:
        assert param in error["message"]
        assert error["param"] == param
    assert mock.state.requests == []
