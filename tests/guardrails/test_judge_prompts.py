"""A judge policy whose prompt lives in the prompt registry (`name@version` or `name@label`), on both
backends: refused when saved if the reference does not resolve (a 400 naming `config.prompt`),
rendered with the text to judge when served, and resolved again when its label moves. Real gateway
calls against the mock upstream, which answers as the judge."""

from __future__ import annotations

from typing import Any

import pytest

from fmops.endpoints.generation import current
from fmops.errors import UserError
from fmops.guardrails.checks.judge import Judge, RegistryRef
from fmops.guardrails.engine import GuardrailBlocked
from fmops.guardrails.schemas import checked
from fmops.platform import Platform
from support.endpoint_world import EndpointWorld, endpoint_world
from support.mock_upstream import MockUpstream

JUDGE_V1: dict[str, Any] = {
    "name": "triage-judge",
    "messages": [
        {"role": "system", "content": "Flag these:\n{{ categories }}\nReply with JSON."},
        {"role": "user", "content": "Judge this: [[{{ text }}]]"},
    ],
    "labels": ["production"],
}
# No {{ text }}: the text comes as a last user message, as with the built-in prompt.
JUDGE_V2: dict[str, Any] = {
    "name": "triage-judge",
    "messages": [{"role": "system", "content": "Second edition. Flag: {{ categories }}"}],
}
FLAGGED = '{"flagged": true, "categories": ["violence"]}'


@pytest.fixture
def w(platform: Platform, mock: MockUpstream) -> EndpointWorld:
    world = endpoint_world(platform, mock)
    world.push(JUDGE_V1)
    world.push(JUDGE_V2)
    return world


def _judge(w: EndpointWorld, prompt: str, **fields: Any) -> Any:
    body = {
        "name": "moderation",
        "guardrail": "judge",
        "on": "output",
        "config": {"model": "other", "prompt": prompt, "categories": ["violence"], "timeout_s": 5},
        **fields,
    }
    return w.platform.guardrails.create(w.project, checked(body), actor="ann")


def test_references_parse() -> None:
    assert RegistryRef.parse("triage-judge@3") == RegistryRef("triage-judge", 3, None)
    assert RegistryRef.parse("triage-judge@production") == RegistryRef("triage-judge", None, "production")
    assert RegistryRef.parse("moderation@1") is None  # the built-in's name is the built-in's
    assert RegistryRef.parse("Not A Ref") is None
    assert str(RegistryRef("j", None, "prod")) == "j@prod"


@pytest.mark.parametrize(
    ("prompt", "why"),
    [
        ("nope@1", "judge prompt 'nope@1': no prompt 'nope' in this project"),
        ("triage-judge@9", "no version 9 of prompt 'triage-judge'; versions: 1 to 2"),
        ("triage-judge@prod", "no label 'prod' on prompt 'triage-judge'; labels: production"),
        ("triage-judge@latest", "pin the judge prompt to a version or a label"),
        ("moderation@7", "no built-in judge prompt 'moderation@7'"),
        ("not a reference", "write name@version or name@label"),
    ],
)
def test_a_reference_that_does_not_resolve_is_a_400_naming_the_field(
    w: EndpointWorld, prompt: str, why: str
) -> None:
    with pytest.raises(UserError) as refused:
        _judge(w, prompt)
    assert refused.value.status_code == 400
    assert refused.value.param == "config.prompt"
    assert why in refused.value.message
    assert w.platform.guardrails.list(w.project) == []


def test_a_prompt_with_other_variables_cannot_judge(w: EndpointWorld) -> None:
    w.push(JUDGE_V1, messages=[{"role": "user", "content": "{{ text }} for {{ customer }}"}], labels=["odd"])
    with pytest.raises(UserError) as refused:
        _judge(w, "triage-judge@odd")
    assert refused.value.param == "config.prompt"
    assert (
        "uses customer; a judge prompt may use only {{ text }} and {{ categories }}" in refused.value.message
    )


@pytest.mark.anyio
async def test_the_registry_prompt_judges_and_a_moved_label_applies(w: EndpointWorld) -> None:
    _judge(w, "triage-judge@production")
    w.mock.script({"reply": "I will hurt them"}, {"reply": FLAGGED})
    with pytest.raises(GuardrailBlocked) as blocked:
        await w.chat(model="small", messages=[{"role": "user", "content": "hi"}])
    assert "blocked by guardrail policy 'moderation': the moderation judge flagged the text (violence)" in (
        blocked.value.message
    )
    asked, judged = w.upstream()
    assert asked["model"] == "up-small"
    assert judged["model"] == "up-other"
    assert judged["messages"] == [
        {"role": "system", "content": "Flag these:\n- violence\nReply with JSON."},
        {"role": "user", "content": "Judge this: [[I will hurt them]]"},
    ]
    assert judged["temperature"] == 0
    (policy,) = await w.platform.guardrails.policies(w.project, model="small", endpoint=None)
    assert isinstance(policy.guardrail, Judge)
    assert policy.guardrail.prompt_ref == "triage-judge@1 (production)"  # on each verdict's span

    w.prompts.set_label(w.project, "triage-judge", "production", 2, actor="ann")
    w.mock.reset()
    w.mock.script({"reply": "a fine answer"}, {"reply": '{"flagged": false}'})
    await w.platform.guardrails.policies(w.project, model="small", endpoint=None, generation=_generation(w))
    done = await w.chat(model="small", messages=[{"role": "user", "content": "hi"}])
    assert done.body["choices"][0]["message"]["content"] == "a fine answer"
    _, judged = w.upstream()
    assert judged["messages"] == [
        {"role": "system", "content": "Second edition. Flag: - violence"},
        {"role": "user", "content": "TEXT:\n<<<\na fine answer\n>>>"},
    ]


@pytest.mark.anyio
async def test_a_prompt_deleted_after_the_policy_was_saved_cannot_decide(w: EndpointWorld) -> None:
    _judge(w, "triage-judge@1", on_error="closed")
    w.prompts.delete(w.project, "triage-judge")
    w.mock.script({"reply": "an answer"})
    await w.platform.guardrails.policies(w.project, model="small", endpoint=None, generation=_generation(w))
    with pytest.raises(GuardrailBlocked) as blocked:
        await w.chat(model="small", messages=[{"role": "user", "content": "hi"}])
    assert "the check could not decide" in blocked.value.message
    assert "no prompt 'triage-judge' in this project" in blocked.value.message
    assert [r["model"] for r in w.upstream()] == ["up-small"]  # the judge was never asked


def _generation(w: EndpointWorld) -> int:
    with w.platform.store.session() as session:
        return current(session, w.project)
