"""`judge`: a gateway model moderates the text with a versioned prompt; a timeout or an unreadable answer
is a GuardrailError (the policy's on_error decides). `context.chat` here is the real openai SDK against
the mock OpenAI-compatible upstream over HTTP, as the engine's would reach a model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from openai import AsyncOpenAI

from fmops.errors import UserError
from fmops.guardrails.base import JSON, Context, GuardrailError, Stage, Verdict
from fmops.guardrails.checks.judge import MODERATION_V1, parse_verdict
from fmops.guardrails.registry import build, get_guardrail
from support.mock_upstream import MockUpstream


def context(mock: MockUpstream) -> Context:
    client = AsyncOpenAI(base_url=mock.url, api_key="test", max_retries=0)

    async def chat(body: JSON) -> JSON:
        response = await client.chat.completions.create(**body)
        return response.model_dump()

    return Context(Stage.output, chat=chat)


@pytest.fixture(autouse=True)
def _fresh(mock: MockUpstream) -> None:
    mock.reset()


def test_facts() -> None:
    cls = get_guardrail("judge")
    assert cls.needs_model
    assert not cls.spans


def test_a_flag_blocks_naming_the_categories_and_the_prompt(mock: MockUpstream) -> None:
    mock.script(
        {"reply": '{"flagged": true, "categories": ["violence", "made_up"], "reason": "it says kill"}'}
    )
    guard = build("judge", {"model": "moderator", "categories": ["violence", "hate"]})
    decision = asyncio.run(guard.acheck("I will hurt them", context(mock)))
    assert decision.verdict is Verdict.block
    assert decision.reason == "the moderation judge flagged the text (violence)"
    assert decision.data == {"prompt": "moderation@1", "model": "moderator", "categories": ["violence"]}
    (sent,) = [r for r in mock.state.requests if r["path"].endswith("/chat/completions")]
    body = sent["body"]
    assert body["model"] == "moderator"
    assert body["temperature"] == 0
    assert "- violence\n- hate" in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == "TEXT:\n<<<\nI will hurt them\n>>>"


def test_not_flagged_is_allowed(mock: MockUpstream) -> None:
    mock.script({"reply": 'Sure. {"flagged": false, "categories": [], "reason": "fine"}'})
    decision = asyncio.run(build("judge", {"model": "m"}).acheck("hello", context(mock)))
    assert decision.verdict is Verdict.allow


def test_an_inline_prompt_is_versioned(mock: MockUpstream) -> None:
    mock.script({"reply": '{"flagged": false}'})
    config = {"model": "m", "prompt": {"version": 3, "text": "Flag medical advice. Categories: {categories}"}}
    decision = asyncio.run(build("judge", config).acheck("take two pills", context(mock)))
    assert decision.data["prompt"] == "inline@3"


def test_a_judge_that_hangs_times_out(mock: MockUpstream) -> None:
    mock.script({"hang": 30})
    guard = build("judge", {"model": "m", "timeout_s": 0.5})
    started = time.perf_counter()
    with pytest.raises(GuardrailError, match=r"did not answer within 0.5 s"):
        asyncio.run(guard.acheck("text", context(mock)))
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("step", "why"),
    [
        ({"reply": "I think it is fine."}, "did not answer with"),
        ({"status": 503}, "failed: InternalServerError"),
    ],
)
def test_an_unusable_answer_is_a_guardrail_error(mock: MockUpstream, step: dict[str, Any], why: str) -> None:
    mock.script(step)
    with pytest.raises(GuardrailError, match=why):
        asyncio.run(build("judge", {"model": "m"}).acheck("text", context(mock)))


def test_without_a_way_to_the_model() -> None:
    with pytest.raises(GuardrailError, match=r"context\.chat"):
        build("judge", {"model": "m"}).check("text", Context(Stage.input))


def test_config_errors_name_each_field() -> None:
    with pytest.raises(UserError) as caught:
        build("judge", {"prompt": "moderation@7", "timeout_s": 0, "categories": []})
    message = caught.value.message
    assert "config.model: Field required" in message
    assert "no built-in judge prompt 'moderation@7'" in message
    assert "config.timeout_s: " in message
    assert "config.categories: " in message
    with pytest.raises(UserError, match=r"only field is \{categories\}"):
        build("judge", {"model": "m", "prompt": {"version": 1, "text": "Flag {things} please"}})


def test_parse_verdict() -> None:
    assert parse_verdict('```json\n{"flagged": true, "categories": ["Hate"]}\n```', ["hate"]) == (
        True,
        ["hate"],
    )
    with pytest.raises(GuardrailError):
        parse_verdict('{"flagged": "yes"}', ["hate"])
    assert "{categories}" in MODERATION_V1.system
