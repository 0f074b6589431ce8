"""The caller's text as a call's input policies that rewrite it (`redact`, `mask`) leave it, worked out
ahead of the call, with nothing recorded.

Whoever keeps a copy of what a person sent before calling the gateway (the consumer chat saves the
message first, so that nothing typed is lost when the model fails) keeps this form: the same engine
and the same policies as the call, so the copy holds `[EMAIL]` where the model and the trace do. The
call itself then runs its policies again, each decision recorded on its trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from fmops.gateway.spans import CallRecord
from fmops.guardrails.base import JSON
from fmops.guardrails.engine import GuardrailBlocked, GuardrailRun
from fmops.guardrails.policy import Action, Policy

REWRITES = frozenset({Action.redact, Action.mask})


def rewriting(policies: Iterable[Policy]) -> tuple[Policy, ...]:
    """The input policies that can rewrite text: redact or mask, with a guardrail that finds spans."""
    return tuple(p for p in policies if p.action in REWRITES and p.guardrail.spans)


async def rewritten_input(policies: Iterable[Policy], record: CallRecord, messages: list[JSON]) -> list[JSON]:
    """`messages` with the caller's text (user and tool messages) rewritten in place by the redact
    and mask policies among `policies`, as `GuardrailRun.check_input` rewrites a call's; returned.

    `record` is a stand-in for the call's span (its model and endpoint are what the checks are told);
    it is never written. A policy that cannot decide and fails closed would refuse the call: the
    call itself refuses it; what the policies before it rewrote stays rewritten."""
    chosen = rewriting(policies)
    if not chosen:
        return messages
    with contextlib.suppress(GuardrailBlocked):
        await GuardrailRun(chosen, record).check_input(messages)
    return messages
