"""The engine: runs one call's policies on its input and its output, the same way on every path
(API, streaming, the chat at `/`, eval runs; a batch job calls it the same way), and records each
decision as a child span of the call.

    run = GuardrailRun(policies, record, chat=...)     # per call; nothing at all when no policies
    await run.check_input(body["messages"], ...)       # redacts in place, or raises GuardrailBlocked
    answer = await run.retry(body, answer, again, ...)  # `retry` policies: ask once more
    await run.check_output(answer)                     # redacts in place, flags, or raises
    run.check_stream(text_so_far) / run.end_stream()   # streaming: on the accumulated text

What a hit does is the policy's `action`: `block` raises (400 on input, 422 on output) naming the
policy and the guardrail's reason, never the matched text; `redact` replaces each found span with
`[TYPE]`, `mask` with asterisks of its length, in what the model receives (or the caller, on output)
and in what the trace stores; `flag` lets it through, marked; `retry` (output) asks once more with
the reason appended, then blocks.

Cost: a cheap check runs inline on the event loop (no task, no thread), so a few regexes on a 2 KB
message add microseconds; a `slow` guardrail, or any check of a text over INLINE_CHARS (a 1 MB
input), runs in a worker thread; a `needs_model` one is awaited
under a time bound, its calls going through the gateway without guardrails of their own (a judge
judged by itself would recurse). A check that cannot decide (GuardrailError, a timeout, a plugin's
bug) is decided by the policy's `on_error`: closed blocks, open allows; the span says which.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from fmops.errors import UserError
from fmops.gateway.spans import CallRecord, new_span_id
from fmops.guardrails.base import INLINE_CHARS, AsyncChatFn, Context, Decision, Stage, TextSpan
from fmops.guardrails.policy import Action, Policy
from fmops.store import utcnow
from fmops.tracing.kinds import GUARDRAIL_KIND, GUARDRAIL_OUTCOME

log = logging.getLogger(__name__)
JSON = dict[str, Any]
SPAN_KIND = GUARDRAIL_KIND
# Attributes on the call's span that the trace explorer and the dashboards read.
BLOCKED_BY = "fmops.guardrails.blocked_by"
FLAGGED_BY = "fmops.guardrails.flagged_by"
REDACTED_BY = "fmops.guardrails.redacted_by"
CUT_OFF = "fmops.guardrails.cut_off"
# On a guardrail span: what the policy did (allowed, blocked, redacted, masked, flagged, retried).
OUTCOME = GUARDRAIL_OUTCOME  # the trace explorer's "blocked by" / "flagged by" filters read it
POLICY = "fmops.guardrail.policy"
# A model-calling check without a timeout of its own is cut off after this long.
MODEL_CHECK_SECONDS = 30.0
# While streaming, a slow (local-model) check runs each time this many more characters have come;
# cheap ones on every chunk; model-calling ones once, on the whole answer.
STREAM_SLOW_EVERY = 512
# Roles whose content is the caller's text (not a prompt's instructions, not an earlier answer).
INPUT_ROLES = frozenset({"user", "tool", "function"})
_SPAN_TAKEN = {Action.redact: "redacted", Action.mask: "masked", Action.flag: "flagged"}


class PolicySource(Protocol):
    """Where the gateway finds a call's policies (fmops.guardrails.service.GuardrailService): the
    project's, the model's and, for an endpoint call, the endpoint's. Awaited on every call: it
    answers from memory while the project's policies have not changed."""

    async def policies(
        self, project_id: str, *, model: str | None, endpoint: str | None, generation: int | None = None
    ) -> tuple[Policy, ...]: ...


def whole_stream(policies: Iterable[Policy]) -> bool:
    """Output policies that rewrite or ask again cannot act on words already sent, nor can one that
    blocks on a check of the whole answer (`Guardrail.whole`: JSON, a phrase it must hold): such a
    stream is run whole and replayed. A flag can come after the words; other blocks cut the stream."""
    return any(
        Stage.output in p.stages
        and (
            p.action in (Action.redact, Action.mask, Action.retry)
            or (p.action is Action.block and p.guardrail.whole)
        )
        for p in policies
    )


class GuardrailBlocked(UserError):
    """A guardrail policy refused the call: 400 for the input, 422 for the output."""

    code = "guardrail_blocked"


@dataclass
class _Tally:
    """One policy at one stage over the call: its last deciding result, for its span."""

    policy: Policy
    stage: Stage
    start: float  # time.perf_counter() at its first check: its span's start, made a datetime at finish
    outcome: str = "allowed"
    verdict: str = "allow"
    reason: str = ""
    latency_ms: float = 0.0
    checks: int = 0
    on_error: str | None = None  # "open" or "closed" when the check could not decide
    error: str | None = None
    score: float | None = None
    found: list[str] = field(default_factory=list)  # the span types found (never the text)
    data: JSON = field(default_factory=dict)


def _by_cost(policies: Iterable[Policy]) -> tuple[Policy, ...]:
    """Cheap checks first: a cheap block saves a judge call."""
    return tuple(sorted(policies, key=lambda p: (p.guardrail.needs_model, p.guardrail.slow)))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
    return ""


def _replaced(value: Any, swaps: list[tuple[str, str]]) -> Any:
    """`value` (a message content, a variable: text, parts, nested JSON) with each original replaced."""
    if isinstance(value, str):
        for original, replacement in swaps:
            value = value.replace(original, replacement)
        return value
    if isinstance(value, list):
        return [_replaced(v, swaps) for v in value]
    if isinstance(value, dict):
        return {k: _replaced(v, swaps) for k, v in value.items()}
    return value


def _merged(spans: Iterable[TextSpan], length: int) -> list[TextSpan]:
    """Spans in order, overlaps dropped (the first found wins), clipped to the text."""
    out: list[TextSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        start, end = max(0, span.start), min(length, span.end)
        if end <= start or (out and start < out[-1].end):
            continue
        out.append(TextSpan(start, end, span.type))
    return out


def _substitute(action: Action, span: TextSpan, original: str) -> str:
    if action is Action.mask:
        return "*" * len(original)
    return f"[{(span.type or 'redacted').upper()}]"


def redact_text(text: str, spans: Iterable[TextSpan], action: Action = Action.redact) -> str:
    """`text` with each span replaced: `[EMAIL]`-style for redact, asterisks for mask."""
    parts: list[str] = []
    at = 0
    for span in _merged(spans, len(text)):
        parts += [text[at : span.start], _substitute(action, span, text[span.start : span.end])]
        at = span.end
    return "".join(parts) + text[at:]


class GuardrailRun:
    """One call's policies and what they decided. Cheap to build; a call with no policies has none."""

    def __init__(
        self,
        policies: Iterable[Policy],
        record: CallRecord,
        *,
        chat: AsyncChatFn | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.record = record
        self.chat = chat
        self.system_prompt = system_prompt
        enabled = _by_cost(policies)
        self.input = tuple(
            p for p in enabled if Stage.input in p.stages and Stage.input in p.guardrail.stages
        )
        self.output = tuple(
            p for p in enabled if Stage.output in p.stages and Stage.output in p.guardrail.stages
        )
        self.tallies: dict[tuple[str, Stage], _Tally] = {}
        # One wall-clock reading per call: the decisions' start and end times are this plus
        # perf_counter offsets (a datetime per decision was a measurable part of a cheap check).
        self._clock = (utcnow(), time.perf_counter())
        self._checked_chars = 0  # streaming: the text length at the last slow check
        record.guardrails = self

    # --- what the gateway asks before running a call -------------------------------------------

    @property
    def retries(self) -> tuple[Policy, ...]:
        return tuple(p for p in self.output if p.action is Action.retry)

    # --- deciding -------------------------------------------------------------------------------

    def _context(self, stage: Stage, final: bool = True) -> Context:
        return Context(
            stage=stage,
            system_prompt=self.system_prompt,
            endpoint=self.record.endpoint,
            model=self.record.model,
            final=final,
            chat=self.chat,
        )

    async def _decide(self, policy: Policy, text: str, context: Context) -> Decision:
        """The guardrail's decision, its time and failures on the policy's tally; a check that cannot
        decide becomes an allow (fail open) or a block (fail closed)."""
        key = (policy.label, context.stage)
        started = time.perf_counter()
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = _Tally(policy, context.stage, started)
        guard = policy.guardrail
        try:
            if guard.needs_model:
                limit = _timeout_of(guard.config)
                async with asyncio.timeout(limit):
                    decision = await guard.acheck(text, context)
            elif guard.slow or len(text) > INLINE_CHARS:
                decision = await asyncio.to_thread(guard.check, text, context)
            else:
                decision = guard.check(text, context)  # inline: microseconds, no task
            tally.on_error = tally.error = None
        except Exception as exc:  # GuardrailError, a timeout, a plugin's bug: on_error decides
            why = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            tally.error = why[:500]
            tally.on_error = "open" if policy.fail_open else "closed"
            if policy.fail_open:
                decision = Decision.allow(f"the check could not decide ({why[:200]}); the policy fails open")
            else:
                decision = Decision.block(f"the check could not decide ({why[:200]})")
        finally:
            tally.latency_ms += (time.perf_counter() - started) * 1000
            tally.checks += 1
        if not decision.allowed or tally.verdict == "allow":
            tally.verdict = decision.verdict.value
            tally.reason = decision.reason
            tally.score = decision.score
            tally.data = decision.data
            tally.found = sorted({s.type for s in decision.spans})
        return decision

    def _blocked(self, policy: Policy, stage: Stage, reason: str) -> GuardrailBlocked:
        self._mark(policy, stage, "blocked")
        what = "input" if stage is Stage.input else "output"
        message = f"{what} blocked by guardrail policy {policy.label!r}: {reason or 'the check failed'}"
        if stage is Stage.input:
            return GuardrailBlocked(message, param="messages")
        error = GuardrailBlocked(f"{message} (trace {self.record.trace_id})")
        error.status_code = 422
        return error

    def _mark(self, policy: Policy, stage: Stage, outcome: str) -> None:
        tally = self.tallies[(policy.label, stage)]
        tally.outcome = outcome

    def _act(self, policy: Policy, stage: Stage, decision: Decision) -> list[TextSpan] | None:
        """What the policy does with a non-allow decision, whatever the guardrail recommended (the
        policy's action decides): raise (block), nothing (flag), or the spans to rewrite (redact,
        mask). A redact or mask action on a decision without spans (or a check that could not decide,
        failing closed) blocks: letting through what it cannot point at would be the wrong default."""
        if decision.allowed:
            return None
        action = policy.action
        if action is Action.flag:
            self._mark(policy, stage, "flagged")
            return None
        if action in (Action.redact, Action.mask) and decision.spans:
            self._mark(policy, stage, _SPAN_TAKEN[action])
            return list(decision.spans)
        raise self._blocked(policy, stage, decision.reason)

    # --- input ----------------------------------------------------------------------------------

    async def check_input(
        self,
        messages: list[JSON],
        *,
        caller: list[JSON] | None = None,
        variables: dict[str, Any] | None = None,
        recorded_variables: dict[str, Any] | None = None,
    ) -> None:
        """Check the caller's text: the user/tool messages of `caller` (an endpoint's consumer
        messages; by default `messages` itself) and the endpoint `variables`. Redaction rewrites every
        copy of a found span in `messages` (what the model receives; the trace's input is the same
        list), in `variables` and in `recorded_variables` (the trace's copy) in place."""
        if not self.input:
            return
        pieces = [_content_text(m.get("content")) for m in (caller if caller is not None else messages)]
        pieces = [
            p
            for m, p in zip(caller if caller is not None else messages, pieces, strict=True)
            if p and m.get("role") in INPUT_ROLES
        ]
        pieces += [v if isinstance(v, str) else str(v) for v in (variables or {}).values() if v]
        if not pieces:
            return
        text = "\n".join(pieces)
        context = self._context(Stage.input)
        for policy in self.input:
            decision = await self._decide(policy, text, context)
            spans = self._act(policy, Stage.input, decision)
            if not spans:
                continue
            merged = _merged(spans, len(text))
            swaps = sorted(
                {
                    (text[s.start : s.end], _substitute(policy.action, s, text[s.start : s.end]))
                    for s in merged
                },
                key=lambda pair: -len(pair[0]),  # the longest first: a short one may sit inside it
            )
            for message in messages:
                if message.get("content") is not None:
                    message["content"] = _replaced(message["content"], swaps)
            if caller is not None:
                for message in caller:
                    if message.get("content") is not None:
                        message["content"] = _replaced(message["content"], swaps)
            for target in (variables, recorded_variables):
                if target:
                    for name, value in list(target.items()):
                        target[name] = _replaced(value, swaps)
            text = _replaced(text, swaps)  # later policies see the redacted form
            self._redacted(policy)

    def _redacted(self, policy: Policy) -> None:
        labels = self.record.attributes.setdefault(REDACTED_BY, [])
        if policy.label not in labels:
            labels.append(policy.label)

    # --- output ---------------------------------------------------------------------------------

    async def retry(
        self,
        body: JSON,
        response: JSON,
        again: Callable[[JSON, float], Awaitable[JSON]],
        deadline: float,
    ) -> JSON:
        """The answer, or, when a `retry` policy refuses it, the answer to one more request with the
        refused answer and the reason appended (usage counts both calls). `check_output` then blocks
        if a retry policy still refuses."""
        if not self.retries:
            return response
        text = _content_text(_message(response).get("content"))
        context = self._context(Stage.output)
        reasons = []
        for policy in self.retries:
            decision = await self._decide(policy, text, context)
            if not decision.allowed:
                self._mark(policy, Stage.output, "retried")
                reasons.append(f"{policy.label}: {decision.reason or 'refused'}")
        if not reasons:
            return response
        ask = {
            **body,
            "messages": [
                *body["messages"],
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": "Your answer was refused by a policy ("
                    + "; ".join(reasons)
                    + "). Answer the request again so that it complies.",
                },
            ],
        }
        second = await again(ask, max(1.0, deadline - time.monotonic()))
        second["usage"] = _added(response.get("usage"), second.get("usage"))
        self.record.attributes["fmops.guardrails.retried"] = True
        return second

    async def check_output(self, response: JSON) -> None:
        """Check the answer (first choice's text): block raises 422, redact/mask rewrite the answer
        in `response` in place (the caller and the trace get the rewritten one), flag marks."""
        if not self.output:
            return
        message = _message(response)
        text = _content_text(message.get("content"))
        context = self._context(Stage.output)
        for policy in self.output:
            decision = await self._decide(policy, text, context)
            if policy.action is Action.retry:
                if decision.allowed:
                    continue
                raise self._blocked(policy, Stage.output, decision.reason)
            spans = self._act(policy, Stage.output, decision)
            if spans:
                text = redact_text(text, spans, policy.action)
                message["content"] = text
                self._redacted(policy)

    async def check_stream(self, text: str, *, final: bool = False) -> GuardrailBlocked | None:
        """The error to cut the stream with, or None. Called with the accumulated text before each
        chunk is sent (cheap checks every time, slow ones every STREAM_SLOW_EVERY characters, model
        ones on the whole answer) and once at the end with `final`."""
        if not self.output:
            return None
        context = self._context(Stage.output, final)
        slow_due = final or len(text) - self._checked_chars >= STREAM_SLOW_EVERY
        if slow_due:
            self._checked_chars = len(text)
        for policy in self.output:
            guard = policy.guardrail
            if (guard.needs_model and not final) or (guard.slow and not slow_due):
                continue
            decision = await self._decide(policy, text, context)
            try:
                self._act(policy, Stage.output, decision)
            except GuardrailBlocked as exc:
                # The stream ends with this error instead of its last words (or, on the whole
                # answer, after them); the span keeps what was sent.
                self.record.attributes[CUT_OFF] = True
                return exc
        return None

    # --- recording ------------------------------------------------------------------------------

    def finish(self) -> list[JSON]:
        """Summary attributes on the call's span and one child span per policy and stage."""
        record = self.record
        rows: list[JSON] = []
        if not self.tallies:
            return rows
        at, clock = self._clock
        end = at + timedelta(seconds=time.perf_counter() - clock)
        # What every decision span of the call shares; the call's own columns stay on the call: a
        # decision holds no text, no spend.
        common: JSON = {
            "trace_id": record.trace_id,
            "parent_span_id": record.span_id,
            "project_id": record.principal.project_id,
            "kind": SPAN_KIND,
            "end_time": end,
            "key_id": record.principal.key_id,
            "user": record.user or record.principal.user_name,
            "session_id": record.session_id,
            "endpoint": record.endpoint,
            **_EMPTY_COLUMNS,
        }
        for tally in self.tallies.values():
            label = tally.policy.label
            if tally.outcome == "blocked":
                _append(record.attributes, BLOCKED_BY, label)
            elif tally.outcome == "flagged":
                _append(record.attributes, FLAGGED_BY, label)
            attributes: JSON = {
                POLICY: label,
                "fmops.guardrail.name": tally.policy.guardrail.name,
                "fmops.guardrail.stage": tally.stage.value,
                "fmops.guardrail.action": tally.policy.action.value,
                "fmops.guardrail.verdict": tally.verdict,
                OUTCOME: tally.outcome,
                "fmops.guardrail.checks": tally.checks,
            }
            optional = {
                "fmops.guardrail.reason": tally.reason or None,
                "fmops.guardrail.on_error": tally.on_error,
                "fmops.guardrail.error": tally.error,
                "fmops.guardrail.score": tally.score,
                "fmops.guardrail.found": tally.found or None,
                "fmops.guardrail.data": tally.data or None,
            }
            attributes.update({k: v for k, v in optional.items() if v is not None})
            rows.append(
                {
                    **common,
                    "span_id": new_span_id(),
                    "name": f"guardrail {label}"[:200],
                    "start_time": at + timedelta(seconds=tally.start - clock),
                    "status": "error" if tally.error else "ok",
                    "status_message": tally.error,
                    "latency_ms": tally.latency_ms,
                    "attributes": attributes,
                }
            )
        return rows


_EMPTY_COLUMNS: JSON = dict.fromkeys(
    (
        "model",
        "provider",
        "response_model",
        "input_tokens",
        "output_tokens",
        "cost",
        "ttft_ms",
        "prompt_name",
        "prompt_version",
        "variant",
        "input",
        "output",
    )
) | {"cache_hit": False}


def _append(attributes: JSON, key: str, label: str) -> None:
    labels = attributes.setdefault(key, [])
    if label not in labels:
        labels.append(label)


def _timeout_of(config: Any) -> float:
    """A model-calling check's bound: its own timeout (plus a second to report it), else the default."""
    for name in ("timeout", "timeout_seconds"):
        value = getattr(config, name, None)
        if isinstance(value, int | float) and value > 0:
            return float(value) + 1.0
    return MODEL_CHECK_SECONDS


def _message(response: JSON) -> JSON:
    choices = response.get("choices") or [{}]
    message = (choices[0] or {}).get("message")
    return message if isinstance(message, dict) else {}


def _added(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> JSON:
    a, b = a or {}, b or {}
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: int(a.get(k) or 0) + int(b.get(k) or 0) for k in keys}


def system_prompt_of(messages: list[JSON]) -> str | None:
    """The first system message's text: what a system-prompt-leak check compares the answer with."""
    for message in messages:
        if message.get("role") in ("system", "developer"):
            return _content_text(message.get("content")) or None
    return None
