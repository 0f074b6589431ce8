"""One call to an endpoint, planned: which variant serves it, the request it becomes, and the check
of its answer against the output schema (with one repair retry).

The gateway runs the planned request exactly as it runs a call to a model (limits, cache,
retries, fallbacks, guardrail policies, one span); this module only decides what that request is
and whether its answer matches the schema. The endpoint's `guardrails:` entries run in the
guardrail engine with its stored policies (fmops.guardrails.schemas.endpoint_policy).

    consumer: model="support-bot", messages=[...], variables={...}
      -> variant (sticky hash) -> prompt version rendered with the variables, consumer messages after
      -> params: version < endpoint < variant < what the consumer set
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fmops.auth import Principal
from fmops.endpoints.resolver import Resolved, ServedVariant
from fmops.errors import UserError
from fmops.fewshot.examples import last_user, with_examples
from fmops.fewshot.retrieval import Retrieval
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.gateway.spans import CallRecord
from fmops.guardrails.engine import GuardrailBlocked as GuardrailBlocked  # what its guardrails raise
from fmops.providers.base import JSON
from fmops.scorers.base import text_of
from fmops.scorers.json_schema import errors as schema_errors

# What the consumer sends that is not a model parameter of theirs to merge.
_OWN_FIELDS = {"model", "messages", "variables", "cache", "fallbacks"}


def schema_format(schema: JSON) -> JSON:
    """The `response_format` that asks a model for an answer matching a prompt's output schema."""
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


_FENCE = "```"


class OutputSchemaMismatch(UserError):
    """The answer did not match the prompt's output schema, even after one repair attempt."""

    status_code = 422
    code = "output_schema_mismatch"


def sticky_subject(
    sticky: str, req: ChatCompletionRequest, principal: Principal, session_id: str | None
) -> str:
    """Who a variant assignment sticks to; the API key when the caller did not say."""
    if sticky == "user" and req.user:
        return "user:" + req.user
    if sticky == "session" and session_id:
        return "session:" + session_id
    return "key:" + principal.key_id


@dataclass
class EndpointCall:
    endpoint: Resolved
    variant: ServedVariant
    request: ChatCompletionRequest  # what the gateway runs: the variant's model, rendered messages
    consumer_messages: list[JSON]
    variables: Mapping[str, Any]
    repaired: bool = False
    retrieval: Retrieval | None = None  # the few-shot examples inserted, when the endpoint has some

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def whole(self) -> bool:
        """A stream whose answer must match an output schema, or pass an output guardrail entry, is
        run whole and replayed; entries that find what must not appear cut the stream there."""
        return self.variant.checker is not None or self.endpoint.whole_output

    @classmethod
    def plan(
        cls, endpoint: Resolved, variant: ServedVariant, req: ChatCompletionRequest, *, json_schema: bool
    ) -> EndpointCall:
        """The request the variant makes of `req`; `json_schema`: its model takes response_format."""
        consumer = [m.model_dump(exclude_none=True) for m in req.messages]
        variables = req.variables or {}
        if variant.prompt is None:
            if req.variables:
                raise UserError(
                    f"endpoint {endpoint.name!r} has no prompt, so it takes no variables", param="variables"
                )
            rendered: list[JSON] = []
        else:
            rendered = variant.prompt.render(variables)
        messages = rendered + consumer
        if not messages:
            raise UserError(
                f"endpoint {endpoint.name!r} has no prompt messages; send `messages`", param="messages"
            )
        data: JSON = {**variant.params}
        if not req.model_fields_set <= _OWN_FIELDS:  # the caller set parameters (extras are forbidden)
            data.update(req.model_dump(exclude_unset=True, exclude_none=True, exclude=_OWN_FIELDS))
        data["model"] = variant.model
        data["messages"] = messages
        cache = req.cache if req.cache is not None else endpoint.cache
        if cache is not None:
            data["cache"] = cache
        fallbacks = req.fallbacks if req.fallbacks is not None else list(endpoint.fallbacks)
        if fallbacks:
            data["fallbacks"] = fallbacks
        if variant.schema is not None and json_schema and "response_format" not in data:
            data["response_format"] = schema_format(variant.schema)
        call = cls(endpoint, variant, req, consumer, variables)
        if call.whole:
            data["stream"] = False
            data.pop("stream_options", None)
        call.request = ChatCompletionRequest.model_validate(data)
        return call

    async def add_examples(self, project_id: str) -> None:
        """The endpoint's few-shot examples for this call's last user message, inserted before it;
        nothing when it has no `fewshot:` option."""
        spec, retriever = self.endpoint.fewshot, self.endpoint.retriever
        if spec is None or retriever is None:
            return
        messages = [m.model_dump(exclude_none=True) for m in self.request.messages]
        at = last_user(messages)
        if at is None or not (query := text_of(messages[at])).strip():
            return
        self.retrieval = await retriever.retrieve(
            project_id, spec, query, generation=self.endpoint.generation
        )
        if self.retrieval.examples:
            data = self.request.model_dump(exclude_unset=True)
            data["messages"] = with_examples(messages, self.retrieval.examples)
            self.request = ChatCompletionRequest.model_validate(data)

    def annotate(self, record: CallRecord) -> None:
        """What the span says about the endpoint: its name, the prompt version and the variant."""
        record.endpoint = self.endpoint.name
        record.variant = self.variant.name
        if self.variant.prompt is not None:
            record.prompt_name = self.variant.prompt.name
            record.prompt_version = self.variant.prompt.version
        if self.variables and isinstance(record.input, dict):
            record.input["variables"] = dict(self.variables)
        if self.retrieval is not None:  # a child span of the call's
            record.parts.append(self.retrieval.span(record))
            record.attributes["fmops.fewshot.returned"] = len(self.retrieval.examples)

    # --- the output schema ----------------------------------------------------------------------

    def check_output(self, record: CallRecord, response: JSON) -> None:
        """After the call: the schema (already repaired once if it could be). A failure keeps the
        answer in the span, which says why it was not delivered. (The endpoint's `guardrails:` run
        in the guardrail engine with the stored policies: `Resolved.guardrails`.)"""
        message = _message(response)
        if self.variant.checker is not None:
            problems = self._problems(message)
            record.attributes["fmops.output_schema"] = {"valid": not problems, "repaired": self.repaired}
            if problems:
                raise OutputSchemaMismatch(
                    f"the answer of endpoint {self.name!r} does not match its prompt's output schema "
                    f"after one repair attempt: {'; '.join(problems)} (trace {record.trace_id})"
                )

    def _problems(self, message: Any) -> list[str]:
        assert self.variant.checker is not None
        text = _unfence(text_of(message))
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return [f"not valid JSON ({exc})" if text.strip() else "the answer is empty"]
        try:
            return schema_errors(self.variant.checker, value)
        except Exception as exc:  # a pattern too slow, a $ref that cannot resolve: the schema's fault
            return [f"the schema could not be checked: {type(exc).__name__}: {exc}"]

    async def conform(
        self,
        body: JSON,
        response: JSON,
        again: Callable[[JSON, float], Awaitable[JSON]],
        deadline: float,
    ) -> JSON:
        """The response, or, when it misses the output schema, the answer to one repair request
        (the bad answer and what was wrong appended); usage counts both calls."""
        if self.variant.checker is None:
            return response
        message = _message(response)
        problems = self._problems(message)
        if not problems:
            return response
        bad = text_of(message)
        repair = {
            **body,
            "messages": [
                *body["messages"],
                {"role": "assistant", "content": bad},
                {
                    "role": "user",
                    "content": "Your answer does not match the required JSON schema: "
                    + "; ".join(problems)
                    + ". Reply again with only the JSON value, matching this schema: "
                    + orjson.dumps(self.variant.schema).decode(),
                },
            ],
        }
        second = await again(repair, max(1.0, deadline - time.monotonic()))
        self.repaired = True
        second["usage"] = _added(response.get("usage"), second.get("usage"))
        return second


def _message(response: JSON) -> Any:
    choices = response.get("choices") or [{}]
    return (choices[0] or {}).get("message") or {}


def _unfence(text: str) -> str:
    """The body of a ```json ... ``` block around the whole answer, as chat models like to write."""
    stripped = text.strip()
    if len(stripped) >= 2 * len(_FENCE) and stripped.startswith(_FENCE) and stripped.endswith(_FENCE):
        first, _, body = stripped[: -len(_FENCE)].partition("\n")
        if first[len(_FENCE) :].strip().isidentifier() or first == _FENCE:
            return body
    return text


def _added(a: Any, b: Any) -> JSON:
    a, b = a or {}, b or {}
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: int(a.get(k) or 0) + int(b.get(k) or 0) for k in keys}
