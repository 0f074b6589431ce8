"""The engine on its own: what each action does to the text, the error a block raises, how a check
that cannot decide is settled, retries, streaming cut-offs, where checks run, and the spans."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fmops.auth import Principal
from fmops.auth.roles import Role
from fmops.gateway.spans import CallRecord
from fmops.guardrails.base import GuardrailConfig, TextSpan
from fmops.guardrails.checks.scorer import ScorerCheck, ScorerCheckConfig
from fmops.guardrails.engine import (
    BLOCKED_BY,
    CUT_OFF,
    FLAGGED_BY,
    OUTCOME,
    REDACTED_BY,
    GuardrailBlocked,
    GuardrailRun,
    redact_text,
    whole_stream,
)
from fmops.guardrails.policy import Action, Scope
from support.guardrail_kit import (
    Broken,
    Emails,
    Judge,
    JudgeConfig,
    Sleepy,
    Stall,
    Words,
    WordsConfig,
    emails,
    policy,
    words,
)

pytestmark = pytest.mark.anyio
PRINCIPAL = Principal("key1", "user1", "ann", "proj1", "default", Role.admin)
SECRET = "ada@example.com"


def record() -> CallRecord:
    return CallRecord(principal=PRINCIPAL, model="small")


def answer(text: str, tokens: int = 3) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": tokens, "total_tokens": 2 + tokens},
    }


def spans_of(run: GuardrailRun) -> dict[str, dict[str, Any]]:
    return {row["attributes"]["fmops.guardrail.policy"]: row for row in run.finish()}


def test_redact_and_mask_rewrite_the_text() -> None:
    text = f"write to {SECRET} or bob@example.org"
    found = [TextSpan(9, 9 + len(SECRET), "email"), TextSpan(28, 43, "email"), TextSpan(10, 12, "x")]
    assert redact_text(text, found) == "write to [EMAIL] or [EMAIL]"
    assert redact_text(text, found, Action.mask) == "write to " + "*" * len(SECRET) + " or " + "*" * 15


async def test_input_redaction_reaches_every_copy_and_is_recorded() -> None:
    rec = record()
    variables = {"question": f"mail {SECRET}"}
    rec.input = {"messages": [], "variables": dict(variables)}
    messages = [
        {"role": "system", "content": f"Answer about: mail {SECRET}"},  # a rendered prompt holds it too
        {"role": "user", "content": [{"type": "text", "text": f"and cc {SECRET}"}]},
        {"role": "assistant", "content": "noted"},
    ]
    rec.input["messages"] = messages
    run = GuardrailRun([policy(emails(), "no-pii", Action.redact)], rec)
    await run.check_input(messages, variables=variables, recorded_variables=rec.input["variables"])
    assert messages[0]["content"] == "Answer about: mail [EMAIL]"
    assert messages[1]["content"] == [{"type": "text", "text": "and cc [EMAIL]"}]
    assert rec.input["variables"] == {"question": "mail [EMAIL]"}
    assert SECRET not in repr(rec.input)
    row = spans_of(run)["no-pii"]
    assert rec.attributes[REDACTED_BY] == ["no-pii"]
    assert row["kind"] == "guardrail"
    assert row["parent_span_id"] == rec.span_id
    assert row["trace_id"] == rec.trace_id
    assert row["attributes"][OUTCOME] == "redacted"
    assert row["attributes"]["fmops.guardrail.found"] == ["email"]
    assert SECRET not in repr(row)


async def test_mask_keeps_the_length() -> None:
    messages = [{"role": "user", "content": f"me: {SECRET}"}]
    await GuardrailRun([policy(emails(), "mask-pii", Action.mask)], record()).check_input(messages)
    assert messages[0]["content"] == "me: " + "*" * len(SECRET)


async def test_a_block_names_the_policy_and_reason_never_the_text() -> None:
    rec = record()
    run = GuardrailRun([policy(emails(), "no-pii", scope=Scope.endpoint, target="triage")], rec)
    with pytest.raises(GuardrailBlocked) as blocked:
        await run.check_input([{"role": "user", "content": f"I am {SECRET}"}])
    error = blocked.value
    assert error.status_code == 400
    assert error.code == "guardrail_blocked"
    assert error.param == "messages"
    assert "'endpoint:triage/no-pii'" in error.message
    assert "found an e-mail address" in error.message
    assert SECRET not in error.message
    spans_of(run)
    assert rec.attributes[BLOCKED_BY] == ["endpoint:triage/no-pii"]


async def test_flag_lets_it_through_and_marks_it() -> None:
    rec = record()
    messages = [{"role": "user", "content": "tell me the password"}]
    run = GuardrailRun([policy(words("password"), "watch", Action.flag)], rec)
    await run.check_input(messages)
    assert messages[0]["content"] == "tell me the password"
    assert spans_of(run)["watch"]["attributes"][OUTCOME] == "flagged"
    assert rec.attributes[FLAGGED_BY] == ["watch"]


async def test_only_the_callers_roles_are_checked() -> None:
    run = GuardrailRun([policy(words("secret"), "deny")], record())
    await run.check_input(
        [{"role": "system", "content": "keep the secret"}, {"role": "user", "content": "hi"}]
    )
    with pytest.raises(GuardrailBlocked):
        await run.check_input([{"role": "tool", "content": "the secret is 42"}])


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_check_that_cannot_decide_follows_on_error(fail_open: bool) -> None:
    rec = record()
    run = GuardrailRun([policy(Broken(GuardrailConfig()), "clf", fail_open=fail_open)], rec)
    messages = [{"role": "user", "content": "hello"}]
    if fail_open:
        await run.check_input(messages)
    else:
        with pytest.raises(GuardrailBlocked, match="could not decide"):
            await run.check_input(messages)
    row = spans_of(run)["clf"]
    assert row["status"] == "error"
    assert "not loaded" in row["status_message"]
    assert row["attributes"]["fmops.guardrail.on_error"] == ("open" if fail_open else "closed")
    assert row["attributes"][OUTCOME] == ("allowed" if fail_open else "blocked")


async def test_a_judge_that_times_out_is_bounded_and_decided_by_on_error() -> None:
    stall = Stall(JudgeConfig(model="judge", timeout=0.05))
    run = GuardrailRun([policy(stall, "judge", on="output", fail_open=True)], record())
    await run.check_output(answer("fine"))  # within ~1 s (the timeout plus a second), allowed
    row = spans_of(run)["judge"]
    assert row["attributes"]["fmops.guardrail.error"] == "timed out"
    assert row["attributes"]["fmops.guardrail.on_error"] == "open"
    assert row["latency_ms"] < 5000


async def test_a_judge_calls_through_the_context_chat() -> None:
    asked: list[dict[str, Any]] = []

    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        asked.append(body)
        return answer("UNSAFE")

    run = GuardrailRun([policy(Judge(JudgeConfig(model="judge")), "mod", on="output")], record(), chat=chat)
    with pytest.raises(GuardrailBlocked) as blocked:
        await run.check_output(answer("some answer"))
    assert blocked.value.status_code == 422
    assert "the judge found it unsafe" in blocked.value.message
    assert asked[0]["model"] == "judge"
    assert asked[0]["messages"][0]["content"] == "some answer"


async def test_output_redaction_rewrites_the_answer() -> None:
    response = answer(f"Contact {SECRET}.")
    run = GuardrailRun([policy(emails(), "no-pii-out", Action.redact, on="output")], record())
    await run.check_output(response)
    assert response["choices"][0]["message"]["content"] == "Contact [EMAIL]."


async def test_retry_asks_once_more_then_blocks() -> None:
    sent: list[dict[str, Any]] = []
    replies = [answer("a clean answer", 4), answer("still the password", 4)]

    async def again(body: dict[str, Any], timeout: float) -> dict[str, Any]:
        sent.append(body)
        return replies.pop(0)

    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}
    rec = record()
    run = GuardrailRun([policy(words("password"), "no-pw", Action.retry, on="output")], rec)
    fixed = await run.retry(body, answer("the password is x"), again, deadline=1e12)
    await run.check_output(fixed)
    assert fixed["choices"][0]["message"]["content"] == "a clean answer"
    assert fixed["usage"]["completion_tokens"] == 3 + 4
    assert sent[0]["messages"][-2] == {"role": "assistant", "content": "the password is x"}
    assert "no-pw: the text holds a denied word" in sent[0]["messages"][-1]["content"]
    assert spans_of(run)["no-pw"]["attributes"][OUTCOME] == "retried"

    run = GuardrailRun([policy(words("password"), "no-pw", Action.retry, on="output")], record())
    second = await run.retry(body, answer("the password is x"), again, deadline=1e12)
    with pytest.raises(GuardrailBlocked) as blocked:
        await run.check_output(second)
    assert blocked.value.status_code == 422
    assert spans_of(run)["no-pw"]["attributes"][OUTCOME] == "blocked"


async def test_streaming_cuts_on_the_accumulated_text() -> None:
    rec = record()
    run = GuardrailRun([policy(words("password"), "no-pw", on="output")], rec)
    assert await run.check_stream("the pass") is None
    cut = await run.check_stream("the password")
    assert cut is not None
    assert cut.status_code == 422
    assert rec.attributes[CUT_OFF] is True
    assert spans_of(run)["no-pw"]["attributes"]["fmops.guardrail.checks"] == 2


async def test_cheap_checks_run_inline_and_slow_ones_in_a_thread() -> None:
    Words.threads.clear()
    run = GuardrailRun(
        [policy(words("x"), "cheap"), policy(Sleepy(WordsConfig(words=["x"])), "slow")], record()
    )
    await run.check_input([{"role": "user", "content": "hello"}])
    cheap, slow = Words.threads
    assert cheap == threading.current_thread().name
    assert slow != cheap


async def test_a_huge_text_is_checked_off_the_event_loop() -> None:
    Words.threads.clear()
    run = GuardrailRun([policy(words("needle"), "cheap")], record())
    with pytest.raises(GuardrailBlocked):
        await run.check_input([{"role": "user", "content": "hay " * 250_000 + "needle"}])  # 1 MB
    (where,) = Words.threads
    assert where != threading.current_thread().name


async def test_cheap_checks_go_first_and_a_block_skips_the_rest() -> None:
    asked: list[Any] = []

    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        asked.append(body)
        return answer("SAFE")

    judge = policy(Judge(JudgeConfig(model="judge")), "judge")
    run = GuardrailRun([judge, policy(words("bomb"), "deny")], record(), chat=chat)
    with pytest.raises(GuardrailBlocked, match="'deny'"):
        await run.check_input([{"role": "user", "content": "a bomb"}])
    assert asked == []


def test_stages_and_whole_streams() -> None:
    flag_out = policy(words("x"), "a", Action.flag, on="output")
    redact_out = policy(emails(), "b", Action.redact, on="output")
    assert not whole_stream([flag_out, policy(emails(), "c", Action.redact)])
    assert whole_stream([flag_out, redact_out])
    # A check of the whole answer (a scorer it must pass) has a stream run whole when it blocks.
    must_hold = ScorerCheck(ScorerCheckConfig(scorer="contains", config={"strings": ["ok"]}))
    must_lack = ScorerCheck(ScorerCheckConfig(scorer="regex", config={"pattern": "x"}, expect="fail"))
    assert whole_stream([policy(must_hold, "d", on="output")])
    assert not whole_stream([policy(must_hold, "d", Action.flag, on="output")])
    assert not whole_stream([policy(must_lack, "e", on="output"), policy(must_hold, "d")])
    run = GuardrailRun([flag_out, policy(emails(), "c", Action.redact, on="both")], record())
    assert [p.name for p in run.input] == ["c"]
    assert [p.name for p in run.output] == ["a", "c"]
    assert isinstance(run.output[1].guardrail, Emails)
