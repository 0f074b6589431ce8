"""The Anthropic provider over real HTTP against a mock Messages API: what it sends (the exact JSON),
how answers, streams and errors come back in OpenAI's format, and one call through the real gateway."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from fmops.providers import ProviderConfig, ProviderError, ProviderTimeout, get_provider_class
from fmops.providers.anthropic import AnthropicProvider
from support.mock_anthropic import REPLY, MockAnthropic, run_mock_anthropic
from support.server import FMOPS, RunningServer, free_port

KEY = "sk-ant-api03-" + "Qw7" * 20
JSON = dict[str, Any]

WEATHER_TOOL: JSON = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TOOL_ANSWER: JSON = {
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": 'Lyon, "FR"'}},
    ],
    "usage": {"input_tokens": 40, "output_tokens": 25},
}


@pytest.fixture(scope="module")
def module_mock() -> Iterator[MockAnthropic]:
    with run_mock_anthropic() as mock:
        yield mock


@pytest.fixture
def mock(module_mock: MockAnthropic) -> MockAnthropic:
    module_mock.reset()
    return module_mock


def provider(mock: MockAnthropic, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        ProviderConfig(model="claude-x", base_url=mock.url, api_key=KEY, options=options)
    )


def chat(mock: MockAnthropic, body: JSON, *, timeout: float = 10, **options: Any) -> JSON:
    async def go() -> JSON:
        p = provider(mock, **options)
        try:
            return await p.chat(body, timeout=timeout)
        finally:
            await p.close()

    return asyncio.run(go())


def stream(mock: MockAnthropic, body: JSON, received: list[JSON] | None = None) -> list[JSON]:
    """Every chunk of a streamed call; `received` keeps those that came before an error."""
    chunks = received if received is not None else []

    async def go() -> None:
        p = provider(mock)
        try:
            async for chunk in p.chat_stream(body, timeout=10):
                chunks.append(chunk)
        finally:
            await p.close()

    asyncio.run(go())
    return chunks


def user(text: str) -> JSON:
    return {"role": "user", "content": text}


def text_of(chunks: list[JSON]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# --- request translation ----------------------------------------------------------------------


def test_request_translation_is_exact(mock: MockAnthropic) -> None:
    body = {
        "model": "claude",  # the gateway's alias; the provider sends its own model id
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            user("Weather in Paris"),
            user("and Lyon?"),
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "15C"}]},
            user("Thanks, summarise."),
        ],
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "user": "user-42",
        "top_k": 5,
        "presence_penalty": 0.5,  # no Anthropic equivalent: dropped
    }
    chat(mock, body)
    assert mock.last["path"] == "/v1/messages"
    assert mock.last["body"] == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": "You are terse.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris"},
                    {"type": "text", "text": "and Lyon?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "15C"}],
                    },
                    {"type": "text", "text": "Thanks, summarise."},
                ],
            },
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "user-42"},
    }


def test_headers_carry_the_key_and_version(mock: MockAnthropic) -> None:
    chat(mock, {"messages": [user("hi")]})
    headers = {k.lower(): v for k, v in mock.last["headers"].items()}
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


@pytest.mark.parametrize(
    ("body", "options", "expected"),
    [
        ({}, {}, 1024),
        ({}, {"default_max_tokens": 77}, 77),
        ({"max_tokens": 5}, {"default_max_tokens": 77}, 5),
        ({"max_tokens": 5, "max_completion_tokens": 9}, {}, 9),
    ],
)
def test_max_tokens_is_always_sent(mock: MockAnthropic, body: JSON, options: JSON, expected: int) -> None:
    chat(mock, {"messages": [user("hi")], **body}, **options)
    assert mock.last["body"]["max_tokens"] == expected
    assert "system" not in mock.last["body"]
    assert "stream" not in mock.last["body"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(mock: MockAnthropic, choice: Any, expected: JSON) -> None:
    chat(mock, {"messages": [user("hi")], "tools": [WEATHER_TOOL], "tool_choice": choice})
    assert mock.last["body"]["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_use(mock: MockAnthropic) -> None:
    chat(mock, {"messages": [user("hi")], "tools": [WEATHER_TOOL], "parallel_tool_calls": False})
    assert mock.last["body"]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_image_parts_become_image_blocks(mock: MockAnthropic) -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    chat(mock, {"messages": [{"role": "user", "content": content}]})
    assert mock.last["body"]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"n": 2}, "n must be 1"),
        ({"tools": [WEATHER_TOOL], "response_format": {"type": "json_object"}}, "cannot combine tools"),
        ({"logprobs": True}, "logprobs"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "deprecated `functions`"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "'input_audio' content parts",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ]
            },
            "http",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{x"}}]}
                ]
            },
            "not JSON",
        ),
    ],
)
def test_untranslatable_requests_are_refused_before_any_call(
    mock: MockAnthropic, body: JSON, message: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")], **body})
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert message in caught.value.message
    assert mock.state.requests == []


@pytest.mark.parametrize("key", ["seed", "min_p", "repetition_penalty", "repeat_penalty"])
def test_sampling_extras_it_cannot_honour_are_refused_by_name(mock: MockAnthropic, key: str) -> None:
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")], key: 1})
    assert (caught.value.status, caught.value.body) == (400, {"param": key})
    assert f"anthropic models have no `{key}`" in caught.value.message
    assert mock.state.requests == []


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_with_or_without_v1(mock: MockAnthropic, suffix: str) -> None:
    async def go() -> JSON:
        p = AnthropicProvider(ProviderConfig(model="claude-x", base_url=mock.url + suffix, api_key=KEY))
        try:
            return await p.chat({"messages": [user("hi")]}, timeout=10)
        finally:
            await p.close()

    assert asyncio.run(go())["choices"][0]["message"]["content"] == REPLY
    assert mock.last["path"] == "/v1/messages"


# --- response translation ---------------------------------------------------------------------


def test_text_response(mock: MockAnthropic) -> None:
    mock.script(
        {
            "content": [{"type": "text", "text": "Bonjour"}, {"type": "text", "text": ", monde."}],
            "usage": {"input_tokens": 12, "output_tokens": 4},
        }
    )
    before = int(time.time())
    out = chat(mock, {"messages": [user("hi")]})
    assert out["id"] == "msg_mock01"
    assert out["object"] == "chat.completion"
    assert out["model"] == "claude-x"
    assert before <= out["created"] <= int(time.time())
    assert out["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Bonjour, monde."}, "finish_reason": "stop"}
    ]
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}


def test_tool_use_response(mock: MockAnthropic) -> None:
    mock.script(TOOL_ANSWER)
    out = chat(mock, {"messages": [user("weather?")], "tools": [WEATHER_TOOL]})
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_1", "toolu_2"]
    assert {c["type"] for c in calls} == {"function"}
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    assert [orjson.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris", "unit": "c"},
        {"city": 'Lyon, "FR"'},
    ]
    assert out["usage"]["total_tokens"] == 65


def test_tool_only_response_has_null_content(mock: MockAnthropic) -> None:
    mock.script({"content": TOOL_ANSWER["content"][1:]})
    message = chat(mock, {"messages": [user("weather?")], "tools": [WEATHER_TOOL]})["choices"][0]["message"]
    assert message["content"] is None
    assert len(message["tool_calls"]) == 2


@pytest.mark.parametrize(
    ("step", "finish_reason"),
    [
        ({"reply": "x", "stop_reason": "end_turn"}, "stop"),
        ({"reply": "x", "stop_reason": "stop_sequence"}, "stop"),
        ({"reply": "x", "stop_reason": "max_tokens"}, "length"),
        (TOOL_ANSWER, "tool_calls"),
    ],
)
def test_finish_reasons(mock: MockAnthropic, step: JSON, finish_reason: str) -> None:
    mock.script(step, step)
    assert chat(mock, {"messages": [user("hi")]})["choices"][0]["finish_reason"] == finish_reason
    final = [c for c in stream(mock, {"messages": [user("hi")]}) if c["choices"]][-1]
    assert final["choices"][0]["finish_reason"] == finish_reason


def test_cached_prompt_tokens_count_as_prompt_tokens(mock: MockAnthropic) -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 3,
    }
    mock.script({"reply": "ok", "usage": usage})
    assert chat(mock, {"messages": [user("hi")]})["usage"] == {
        "prompt_tokens": 1110,
        "completion_tokens": 3,
        "total_tokens": 1113,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }


def test_json_schema_is_answered_through_a_forced_tool(mock: MockAnthropic) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = {
        "content": [{"type": "tool_use", "id": "toolu_j", "name": "place", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use",
    }
    mock.script(answer, answer)
    body = {
        "messages": [user("Where?")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    }
    out = chat(mock, body)
    assert mock.last["body"]["tools"] == [
        {"name": "place", "description": "Give the answer as this tool's input.", "input_schema": schema}
    ]
    assert mock.last["body"]["tool_choice"] == {"type": "tool", "name": "place"}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert orjson.loads(out["choices"][0]["message"]["content"]) == {"city": "Oslo"}
    assert "tool_calls" not in out["choices"][0]["message"]

    chunks = stream(mock, body)
    assert orjson.loads(text_of(chunks)) == {"city": "Oslo"}
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_json_object_forces_a_tool_that_takes_any_object(mock: MockAnthropic) -> None:
    mock.script(
        {"content": [{"type": "tool_use", "id": "t", "name": "json_response", "input": {"a": [1, 2]}}]}
    )
    out = chat(mock, {"messages": [user("JSON please")], "response_format": {"type": "json_object"}})
    assert mock.last["body"]["tools"][0]["name"] == "json_response"
    assert mock.last["body"]["tools"][0]["input_schema"] == {"type": "object"}
    assert mock.last["body"]["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert orjson.loads(out["choices"][0]["message"]["content"]) == {"a": [1, 2]}
    assert out["choices"][0]["finish_reason"] == "stop"


# --- streaming translation --------------------------------------------------------------------


def test_stream_text_and_usage(mock: MockAnthropic) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    mock.script({"reply": text, "usage": {"input_tokens": 9, "output_tokens": 11}})
    chunks = stream(
        mock, {"messages": [user("hi")], "stream": True, "stream_options": {"include_usage": True}}
    )
    sent = mock.last["body"]
    assert sent["stream"] is True
    assert "stream_options" not in sent
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {"msg_mock01"}
    assert {c["model"] for c in chunks} == {"claude-x"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text_of(chunks) == text
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 9
    finish = chunks[-2]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 11, "total_tokens": 20}


def test_stream_without_include_usage_has_no_usage_chunk(mock: MockAnthropic) -> None:
    chunks = stream(mock, {"messages": [user("hi")], "stream": True})
    assert text_of(chunks) == REPLY
    assert all(c["choices"] and "usage" not in c for c in chunks)


def test_stream_tool_calls_reassemble(mock: MockAnthropic) -> None:
    mock.script(TOOL_ANSWER)
    chunks = stream(mock, {"messages": [user("weather?")], "tools": [WEATHER_TOOL]})
    deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or []]
    heads = [d for d in deltas if "id" in d]
    assert heads == [
        {
            "index": 0,
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "toolu_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
    ]
    fragments: dict[int, list[str]] = {0: [], 1: []}
    for d in deltas:
        fragments[d["index"]].append(d["function"]["arguments"])
    assert len(fragments[0]) > 3  # arguments arrive in pieces, as Anthropic sends them
    assert orjson.loads("".join(fragments[0])) == {"city": "Paris", "unit": "c"}
    assert orjson.loads("".join(fragments[1])) == {"city": 'Lyon, "FR"'}
    assert text_of(chunks) == "Let me look."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_tool_call_without_arguments_still_sends_json(mock: MockAnthropic) -> None:
    events = [
        {
            "type": "message_start",
            "message": {"id": "msg_e", "model": "claude-x", "usage": {"input_tokens": 3}},
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    mock.script({"events": events})
    chunks = stream(mock, {"messages": [user("time?")]})
    args = [
        d["function"]["arguments"] for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert orjson.loads("".join(args)) == {}


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [("overloaded_error", True), ("api_error", True), ("invalid_request_error", False)],
)
def test_error_event_mid_stream_raises(mock: MockAnthropic, error_type: str, retryable: bool) -> None:
    mock.script({"reply": "one two three four", "error_after": 2, "error_type": error_type})
    received: list[JSON] = []
    with pytest.raises(ProviderError) as caught:
        stream(mock, {"messages": [user("hi")]}, received)
    assert text_of(received) == "one two"
    assert caught.value.retryable is retryable
    assert f"mock stream error: {error_type}" in caught.value.message


def test_error_event_before_any_content_raises_before_the_first_chunk(mock: MockAnthropic) -> None:
    events = [
        {
            "type": "message_start",
            "message": {"id": "msg_e", "model": "claude-x", "usage": {"input_tokens": 3}},
        },
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    mock.script({"events": events})
    received: list[JSON] = []
    with pytest.raises(ProviderError) as caught:
        stream(mock, {"messages": [user("hi")]}, received)
    assert received == []  # so the gateway can still retry or fall back
    assert caught.value.retryable


def test_stream_cut_before_message_stop_is_retryable(mock: MockAnthropic) -> None:
    mock.script({"reply": "one two three four five", "truncate_after": 5})
    received: list[JSON] = []
    with pytest.raises(ProviderError) as caught:
        stream(mock, {"messages": [user("hi")]}, received)
    assert caught.value.retryable
    assert text_of(received) == "one two"


def test_closing_the_stream_closes_the_upstream_connection(mock: MockAnthropic) -> None:
    mock.script({"reply": " ".join(["word"] * 400), "chunk_delay": 0.02})

    async def go() -> list[JSON]:
        p = provider(mock)
        got: list[JSON] = []
        try:
            iterator = p.chat_stream({"messages": [user("hi")]}, timeout=10)
            async for chunk in iterator:
                got.append(chunk)
                if len(got) == 3:
                    break
            await iterator.aclose()  # type: ignore[attr-defined]
            deadline = time.monotonic() + 5
            while mock.state.aborted_streams == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await p.close()
        return got

    got = asyncio.run(go())
    assert len(got) == 3
    assert mock.state.aborted_streams == 1


# --- errors -----------------------------------------------------------------------------------


def test_429_is_retryable_with_retry_after(mock: MockAnthropic) -> None:
    mock.script({"status": 429, "error_type": "rate_limit_error", "message": "Slow down", "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")]})
    assert caught.value.retryable
    assert caught.value.retry_after == 7
    assert caught.value.status == 429
    assert "Slow down" in caught.value.message


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_are_retryable(mock: MockAnthropic, status: int) -> None:
    mock.script({"status": status, "error_type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")]})
    assert caught.value.retryable
    assert caught.value.status == 502
    assert "Overloaded" in caught.value.message


def test_400_is_not_retryable_and_keeps_the_upstream_message(mock: MockAnthropic) -> None:
    mock.script(
        {"status": 400, "error_type": "invalid_request_error", "message": "temperature: must be <= 1"}
    )
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")], "temperature": 1.5})
    assert not caught.value.retryable
    assert caught.value.status == 400
    assert "temperature: must be <= 1" in caught.value.message
    assert mock.last["body"]["temperature"] == 1.5  # passed through; Anthropic decides


def test_error_response_on_a_stream_request(mock: MockAnthropic) -> None:
    mock.script({"status": 429, "error_type": "rate_limit_error", "message": "Slow down", "retry_after": 2})
    with pytest.raises(ProviderError) as caught:
        stream(mock, {"messages": [user("hi")]})
    assert caught.value.retryable
    assert caught.value.retry_after == 2


def test_the_key_never_appears_in_errors(mock: MockAnthropic) -> None:
    mock.script({"status": 401, "error_type": "authentication_error", "message": f"invalid x-api-key: {KEY}"})
    with pytest.raises(ProviderError) as caught:
        chat(mock, {"messages": [user("hi")]})
    assert caught.value.status == 401
    assert not caught.value.retryable
    assert "invalid x-api-key" in caught.value.message
    assert KEY not in caught.value.message
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value.__dict__)
    assert mock.last["headers"]["x-api-key"] == KEY


def test_missing_key_is_the_upstreams_401(mock: MockAnthropic) -> None:
    async def go() -> JSON:
        p = AnthropicProvider(ProviderConfig(model="claude-x", base_url=mock.url))
        try:
            return await p.chat({"messages": [user("hi")]}, timeout=10)
        finally:
            await p.close()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(go())
    assert caught.value.status == 401
    assert "x-api-key header is required" in caught.value.message
    assert "x-api-key" not in {k.lower() for k in mock.last["headers"]}


def test_slow_upstream_times_out(mock: MockAnthropic) -> None:
    mock.script({"delay": 2})
    with pytest.raises(ProviderTimeout) as caught:
        chat(mock, {"messages": [user("hi")]}, timeout=0.3)
    assert caught.value.retryable
    assert caught.value.status == 504


def test_unreachable_upstream_is_retryable() -> None:
    async def go() -> JSON:
        p = AnthropicProvider(ProviderConfig(model="claude-x", base_url=f"http://127.0.0.1:{free_port()}"))
        try:
            return await p.chat({"messages": [user("hi")]}, timeout=5)
        finally:
            await p.close()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(go())
    assert caught.value.retryable
    assert "cannot reach the upstream" in caught.value.message


def test_registered_as_a_plugin() -> None:
    cls = get_provider_class("anthropic")
    assert cls is AnthropicProvider
    assert cls.capabilities.streaming
    assert cls.capabilities.tools
    assert cls.capabilities.json_schema
    assert not cls.capabilities.embeddings


# --- end to end through the gateway -----------------------------------------------------------


def test_through_the_gateway_with_the_openai_sdk(sqlite_server: RunningServer, mock: MockAnthropic) -> None:
    env = {**os.environ, "FMOPS_HOME": str(sqlite_server.home)}
    args = ["models", "add", "claude", "--provider", "anthropic", "--model", "claude-x"]
    added = subprocess.run(
        [str(FMOPS), *args, "--base-url", mock.url, "--api-key", KEY],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert "added claude (anthropic: claude-x)" in added.stdout

    client = openai.OpenAI(base_url=sqlite_server.url + "/v1", api_key=sqlite_server.admin_key, max_retries=0)
    mock.script({"reply": "Paris is in France.", "usage": {"input_tokens": 14, "output_tokens": 5}})
    answer = client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}],
        max_tokens=50,
    )
    assert answer.choices[0].message.content == "Paris is in France."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "claude"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (14, 5)
    sent = mock.last
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["body"]["model"] == "claude-x"
    assert sent["body"]["system"] == "Be brief."
    assert sent["body"]["max_tokens"] == 50

    mock.script(
        {"reply": "Streaming from the mock Claude.", "usage": {"input_tokens": 6, "output_tokens": 5}}
    )
    chunks = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Streaming from the mock Claude."
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 11
    assert mock.last["body"]["stream"] is True
    assert mock.last["body"]["max_tokens"] == 1024

    mock.script({"reply": "half an answer", "error_after": 1, "error_type": "overloaded_error"})
    got: list[str] = []
    broken = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        got.extend(c.choices[0].delta.content or "" for c in broken if c.choices)
    assert "".join(got) == "half"
    assert "mock stream error: overloaded_error" in str(caught.value)
