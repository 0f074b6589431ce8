"""The gateway: one OpenAI-compatible entry to every model in the catalog.

For each call: resolve the alias, check the request against the model's profile, admit it under
rate limits and budgets, answer from the cache when asked, call the provider with retries and
fallbacks, settle tokens and cost, and record a span off the request path.

Strict trace durability (`strict=True`, `FMOPS_TRACE_DURABILITY=strict`; see fmops.tracing.writer):
a call is admitted only if the trace store can take its span (else 503 + Retry-After, before the
upstream is called). Once the call has run, the span of a call answered 2xx, or of one whose
upstream answered (it has spend), is committed, with its spend, before the answer leaves: a 2xx, a
stream's `[DONE]` (after its last chunk), an error after the upstream ran (a refused output). Past
the commit deadline (what is left of the request's `timeout`, at most 5 s) the span is fsync'd to
the spool and the caller gets 503 + Retry-After instead (a stream: an error event, then `[DONE]`);
a caller that hangs up has its span spooled likewise. Calls that failed before the upstream
answered are traced as in buffered mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmops.auth import Principal
from fmops.catalog import Catalog, ModelEntry
from fmops.endpoints.plan import EndpointCall, sticky_subject
from fmops.errors import Conflict, FmopsError, NotFound, UserError
from fmops.gateway.bodies import encode_vector, estimate_usage, output_of, usage_of
from fmops.gateway.capabilities import capabilities
from fmops.gateway.errors import internal_error, record_failure, traced
from fmops.gateway.routing import CircuitBreaker, call_with_fallbacks
from fmops.gateway.schemas import ChatCompletionRequest, EmbeddingRequest
from fmops.gateway.spans import CallRecord
from fmops.gateway.streaming import (
    StreamAccumulator,
    close_upstream,
    delta_text,
    guardrail_error,
    next_chunk,
    replay,
    stream_error,
)
from fmops.guardrails.engine import GuardrailRun, PolicySource, system_prompt_of, whole_stream
from fmops.guardrails.policy import Policy
from fmops.guardrails.rewrite import rewritten_input
from fmops.providers.base import JSON, Provider, ProviderError
from fmops.providers.registry import get_provider_class
from fmops.providers.sse import DONE, encode
from fmops.store import utcnow
from fmops.tracing import TraceWriter
from fmops.tracing.tags import TAGS_HEADER, merge_tags, parse_tags

if TYPE_CHECKING:
    from fmops.endpoints.resolver import EndpointResolver, Resolved
    from fmops.gateway.cache import ResponseCache
    from fmops.gateway.limits import Limits

log = logging.getLogger(__name__)


@dataclass
class ChatResult:
    body: JSON
    record: CallRecord


@dataclass
class StreamResult:
    events: AsyncIterator[bytes]
    record: CallRecord


class Gateway:
    def __init__(
        self,
        catalog: Catalog,
        tracer: TraceWriter,
        *,
        limits: Limits | None = None,
        cache: ResponseCache | None = None,
        breaker: CircuitBreaker | None = None,
        default_timeout: float = 600.0,
        strict: bool = False,
        tracing: bool = True,
        endpoints: EndpointResolver | None = None,
        guardrails: PolicySource | None = None,
    ) -> None:
        self.catalog = catalog
        self.endpoints = endpoints  # `model` may name an endpoint (fmops.endpoints) as well as a model
        self.guardrails = guardrails  # the policies (fmops.guardrails) each call runs under
        self.tracer = tracer
        self.limits = limits
        self.cache = cache
        self.breaker = breaker or CircuitBreaker()
        self.default_timeout = default_timeout
        # Strict trace durability: a 2xx only once the call's span is committed.
        self.strict = strict
        self.tracing = tracing  # off only to measure what tracing costs (FMOPS_TRACING=false)
        self._providers: dict[str, Provider] = {}
        self._background: set[asyncio.Task[None]] = set()

    # --- plumbing -------------------------------------------------------------------------------

    def provider(self, entry: ModelEntry) -> Provider:
        key = entry.connection_id
        found = self._providers.get(key)
        if found is None:
            found = get_provider_class(entry.provider)(entry.provider_config())
            self._providers[key] = found
        return found

    async def resolve(self, principal: Principal, alias: str) -> ModelEntry:
        cached = self.catalog.cached_models(principal.project_id)
        if cached is not None and alias in cached:
            return cached[alias]
        return await asyncio.to_thread(self.catalog.get, principal.project_id, alias)

    async def _chain(
        self, principal: Principal, entry: ModelEntry, extra: list[str] | None
    ) -> list[ModelEntry]:
        chain = [entry]
        for alias in [*(extra or []), *entry.fallbacks]:
            if alias not in {e.alias for e in chain}:
                chain.append(await self.resolve(principal, alias))
        return chain

    def _check(self, entry: ModelEntry, req: ChatCompletionRequest) -> None:
        caps = capabilities(entry)
        if not caps.chat:
            raise UserError(
                f"model {entry.alias!r} serves embeddings, not chat; use /v1/embeddings", param="model"
            )
        limit = req.output_limit
        if limit and entry.context_window and limit > entry.context_window:
            raise UserError(
                f"max_tokens is {limit}, but {entry.alias!r} has a context window "
                f"of {entry.context_window} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if (req.tools or req.functions) and not caps.tools:
            raise UserError(f"model {entry.alias!r} does not support tools", param="tools")
        fmt = (req.response_format or {}).get("type")
        if fmt == "json_schema" and not caps.json_schema:
            raise UserError(
                f"model {entry.alias!r} does not support json_schema output", param="response_format"
            )
        if req.stream and not caps.streaming:
            raise UserError(f"model {entry.alias!r} does not stream; send stream=false", param="stream")

    def _record(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        session_id: str | None,
        body: JSON,
        traceparent: str | bytes | None = None,
        tags: tuple[str, ...] = (),
    ) -> CallRecord:
        """The call's span, whose input reuses the upstream body (one serialisation per request);
        `tags` (the X-Fmops-Tags header's, checked) join those of `metadata.tags`."""
        params = {k: v for k, v in body.items() if k not in ("messages", "model", "stream_options")}
        for name in ("cache", "timeout", "fallbacks"):
            value = getattr(req, name)
            if value is not None:
                params[name] = value.model_dump() if hasattr(value, "model_dump") else value
        record = CallRecord(
            principal=principal,
            model=req.model,
            user=req.user,
            session_id=session_id,
            input={"messages": body["messages"], "params": params},
        )
        if req.metadata and "tags" in req.metadata:  # OpenAI's metadata values are strings: comma-separated
            record.tags = parse_tags(req.metadata["tags"], param="metadata.tags")
        if tags:
            record.tags = merge_tags(record.tags, tags, param=TAGS_HEADER)
        record.follow(traceparent)
        return record

    def _cache_ttl(self, req: ChatCompletionRequest, entry: ModelEntry) -> int | None:
        if req.cache is False:
            return None
        if req.cache is True:
            return entry.cache_ttl_seconds or 300
        if req.cache is not None:
            return req.cache.ttl
        return entry.cache_ttl_seconds

    async def _from_cache(
        self, record: CallRecord, entry: ModelEntry, req: ChatCompletionRequest, body: JSON
    ) -> tuple[str | None, int | None, JSON | None]:
        """(cache key, ttl, cached answer): key and ttl are None when caching is off for this call."""
        ttl = self._cache_ttl(req, entry)
        if not ttl or self.cache is None:
            return None, None, None
        key = self.cache.key_for(record.principal.project_id, entry.alias, body)
        cached = await self.cache.get(key)
        if cached is not None:
            record.cache_hit = True
            record.response_model = cached.get("model")
            record.output = output_of(cached)
            await self._settle(record, entry, cached)
            record.cost = 0.0  # nothing was spent upstream
        return key, ttl, cached

    async def _settle(self, record: CallRecord, entry: ModelEntry, body: JSON | None) -> None:
        if body is not None:
            record.input_tokens, record.output_tokens = usage_of(body)
        record.cost = entry.cost(record.input_tokens or 0, record.output_tokens or 0)
        record.provider = entry.provider
        if self.limits is not None and not record.settled:
            record.settled = True
            spent = (
                (0, 0, 0.0)
                if record.cache_hit
                else (record.input_tokens or 0, record.output_tokens or 0, record.cost)
            )
            try:
                await self.limits.settle(record.principal, *spent, record.admission)
            except Exception:
                log.exception("could not settle usage")

    def _finish(self, record: CallRecord, *, durable: bool = False) -> None:
        if self.limits is not None and record.admission is not None and not record.settled:
            # A failed call spent nothing: give its token reservation back.
            record.settled = True
            task = asyncio.get_running_loop().create_task(
                self.limits.settle(record.principal, 0, 0, 0.0, record.admission)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if not self.tracing:
            return
        # The guardrails' decisions: summary attributes on the call's span (so before its row),
        # and child spans, written as buffered spans whatever the durability mode.
        decisions = [*(record.guardrails.finish() if record.guardrails else ()), *record.parts]
        row = record.row()
        # Strict: a 2xx, or a call whose upstream answered (settled: it has spend), is committed
        # before the answer leaves; the caller awaits `_make_durable`.
        if durable and self.strict and (record.status == "ok" or record.provider is not None):
            record.durable_row = row
        else:
            self.tracer.record(row)
        if decisions:  # parts of the call, not calls: not counted in the metrics nor in spend
            self.tracer.record_parts(decisions)

    async def _make_durable(self, record: CallRecord, timeout: float | None = None) -> None:
        """Strict: commit the call's span within what is left of its `timeout`; 503 past it (the span
        is then in the spool). An error answer keeps its own error: its span is spooled all the same."""
        if record.durable_row is None:
            return
        row, record.durable_row = record.durable_row, None
        left = (timeout or self.default_timeout) - (utcnow() - record.start).total_seconds()
        try:
            await self.tracer.commit([row], timeout=left)
        except FmopsError as exc:
            if record.status == "ok":
                exc.trace_id = record.trace_id
                raise  # no 2xx without the span committed
            log.warning("strict trace not committed in time", extra={"trace": record.trace_id})

    # --- chat -----------------------------------------------------------------------------------

    async def _admit(
        self, record: CallRecord, req: ChatCompletionRequest, entry: ModelEntry | None = None
    ) -> ModelEntry:
        if self.strict and self.tracing:
            self.tracer.admit()  # before the upstream is paid: can this call's span be kept?
        entry = entry or await self.resolve(record.principal, req.model)
        self._check(entry, req)
        if self.limits is not None:
            prompt, output = estimate_usage(req)
            # The estimated cost is held on the principal's budgets until the call settles.
            cost = entry.cost(prompt, output)
            record.admission = await self.limits.admit(record.principal, prompt + output, cost)
        return entry

    async def chat(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        session_id: str | None = None,
        traceparent: str | bytes | None = None,
        annotate: Callable[[CallRecord], None] | None = None,
        *,
        tags: tuple[str, ...] = (),
        guardrails: bool = True,
    ) -> ChatResult:
        """`annotate` may add to the call's span before it runs (the playground marks its calls);
        `tags` are the caller's besides `metadata.tags` (the X-Fmops-Tags header's, checked);
        `guardrails=False` only for a guardrail's own model call (a judge), which its policies would
        otherwise judge again, without end."""
        entry, call = await self._route(principal, req, session_id)
        policies = await self._policies(principal, req, call) if guardrails else ()
        return await self._chat(
            principal, req, session_id, traceparent, entry, call, annotate, tags, policies
        )

    async def _policies(
        self, principal: Principal, req: ChatCompletionRequest, call: EndpointCall | None
    ) -> tuple[Policy, ...]:
        """The guardrail policies this call runs under: the project's, its model's, its endpoint's
        (stored, then the endpoint's own `guardrails:` entries)."""
        if self.guardrails is None:
            return call.endpoint.guardrails if call is not None else ()
        if call is not None:
            stored = await self.guardrails.policies(  # the generation its resolver read: not read again
                principal.project_id,
                model=call.request.model,
                endpoint=call.name,
                generation=call.endpoint.generation,
            )
            return stored + call.endpoint.guardrails if call.endpoint.guardrails else stored
        return await self.guardrails.policies(principal.project_id, model=req.model, endpoint=None)

    async def rewritten_input(
        self, principal: Principal, req: ChatCompletionRequest, session_id: str | None = None
    ) -> list[JSON]:
        """`req`'s messages as the call's input policies that redact or mask would leave them (the
        project's, the model's, the endpoint's), with nothing called and no span written: the form a
        caller that keeps its own copy before the call (the consumer chat) stores. Unchanged when no
        such policy applies, or when `req` names nothing callable (the call will say why)."""
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        if self.guardrails is None:
            return messages
        try:
            _, call = await self._route(principal, req, session_id)
            policies = await self._policies(principal, req, call)
        except FmopsError:
            return messages
        model = call.request.model if call is not None else req.model
        record = CallRecord(principal=principal, model=model, endpoint=call.name if call else None)
        return await rewritten_input(policies, record, messages)

    def _judge_chat(self, record: CallRecord) -> Callable[[JSON], Awaitable[JSON]]:
        """A model-calling guardrail's way to a model: a gateway call as the caller's project, in the
        call's trace, with no guardrails of its own."""

        async def chat(body: JSON) -> JSON:
            req = ChatCompletionRequest.model_validate({**body, "stream": False})
            parent = f"00-{record.trace_id}-{record.span_id}-01"
            result = await self.chat(record.principal, req, traceparent=parent, guardrails=False)
            return result.body

        return chat

    async def _route(
        self, principal: Principal, req: ChatCompletionRequest, session_id: str | None
    ) -> tuple[ModelEntry | None, EndpointCall | None]:
        """What `model` names: a model (with its entry when at hand), or an endpoint (the call
        planned for it). A model call pays a dict lookup here while the catalog is cached."""
        entry = None
        if self.endpoints is not None:
            models = self.catalog.cached_models(principal.project_id)
            if models is None:
                models = await asyncio.to_thread(self.catalog.models, principal.project_id)
            entry = models.get(req.model)
            if entry is None:
                resolved = await self.endpoints.resolve(principal.project_id, req.model)
                # One the caller may not call (its `access:`) is answered as an unknown model.
                if resolved is not None and resolved.admits(principal):
                    return await self._plan(principal, req, session_id, resolved)
        if req.variables is not None:
            if entry is None:
                entry = await self.resolve(principal, req.model)  # neither a model nor an endpoint: 404
            raise UserError(
                f"variables are for endpoints, and {req.model!r} is a model: put the text in `messages`",
                param="variables",
            )
        if not req.messages:
            raise UserError("messages must not be empty when calling a model", param="messages")
        return entry, None

    async def _plan(
        self, principal: Principal, req: ChatCompletionRequest, session_id: str | None, resolved: Resolved
    ) -> tuple[ModelEntry, EndpointCall]:
        variant = resolved.choose(sticky_subject(resolved.sticky, req, principal, session_id))
        try:
            entry = await self.resolve(principal, variant.model)
        except NotFound:
            raise Conflict(
                f"endpoint {resolved.name!r} calls model {variant.model!r}, which no longer exists; "
                f"fix it with `fmops endpoints update {resolved.name}`",
                param="model",
                code="endpoint_misconfigured",
            ) from None
        call = EndpointCall.plan(resolved, variant, req, json_schema=capabilities(entry).json_schema)
        await call.add_examples(principal.project_id)  # the endpoint's few-shot examples, if any
        return entry, call

    def _open(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        session_id: str | None,
        traceparent: str | bytes | None,
        call: EndpointCall | None,
        annotate: Callable[[CallRecord], None] | None = None,
        tags: tuple[str, ...] = (),
        policies: tuple[Policy, ...] = (),
    ) -> tuple[ChatCompletionRequest, JSON, CallRecord]:
        """The request to send (an endpoint's, when one was planned), its upstream body and its span:
        what chat and stream both set up before anything can fail."""
        if call is not None:
            req = call.request
        body = req.upstream_body()
        record = self._record(principal, req, session_id, body, traceparent, tags)
        if annotate is not None:
            annotate(record)
        if call is not None:
            call.annotate(record)
        if policies:  # sets record.guardrails
            GuardrailRun(
                policies,
                record,
                chat=self._judge_chat(record),
                system_prompt=system_prompt_of(body["messages"]),
            )
        return req, body, record

    async def _prepare(
        self,
        record: CallRecord,
        req: ChatCompletionRequest,
        body: JSON,
        entry: ModelEntry | None,
        call: EndpointCall | None,
    ) -> tuple[ModelEntry, str | None, int | None, JSON | None]:
        """Before the upstream, inside the call's error handling (so a refusal is traced): the
        input guardrails (a redaction rewrites `body`, so the model, the cache key and the trace see
        the redacted text only), admission under limits, and the cache (key, ttl, cached answer)."""
        run: GuardrailRun | None = record.guardrails
        if run is not None and run.input:
            if call is None:
                await run.check_input(body["messages"])
            else:
                recorded = record.input.get("variables") if isinstance(record.input, dict) else None
                await run.check_input(
                    body["messages"],
                    caller=call.consumer_messages,
                    variables=dict(call.variables),
                    recorded_variables=recorded,
                )
        entry = await self._admit(record, req, entry)
        cache_key, ttl, cached = await self._from_cache(record, entry, req, body)
        if cached is not None and call is not None:
            cached["model"] = call.name
        return entry, cache_key, ttl, cached

    async def _chat(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        session_id: str | None,
        traceparent: str | bytes | None,
        entry: ModelEntry | None = None,
        call: EndpointCall | None = None,
        annotate: Callable[[CallRecord], None] | None = None,
        tags: tuple[str, ...] = (),
        policies: tuple[Policy, ...] = (),
    ) -> ChatResult:
        req, body, record = self._open(
            principal, req, session_id, traceparent, call, annotate, tags, policies
        )
        run: GuardrailRun | None = record.guardrails
        try:
            entry, cache_key, ttl, cached = await self._prepare(record, req, body, entry, call)
            if cached is not None:
                if run is not None:
                    await run.check_output(cached)
                return ChatResult(cached, record)
            timeout = req.timeout or self.default_timeout
            deadline = time.monotonic() + timeout
            chain = await self._chain(principal, entry, req.fallbacks)

            async def attempt(candidate: ModelEntry, limit: float) -> JSON:
                provider = self.provider(candidate)
                response = await provider.chat(body, timeout=limit)
                if call is not None:  # one repair retry when the answer misses the output schema
                    response = await call.conform(
                        body, response, lambda b, t: provider.chat(b, timeout=t), deadline
                    )
                if run is not None and run.retries:  # one more try when a `retry` policy refuses it
                    response = await run.retry(
                        body, response, lambda b, t: provider.chat(b, timeout=t), deadline
                    )
                return response

            response, answered, attempts = await call_with_fallbacks(
                chain,
                attempt,
                deadline=deadline,
                breaker=self.breaker,
                breaker_key=lambda e: e.connection_id,
            )
            if call is not None:
                response["model"] = call.name
            else:
                response["model"] = req.model if answered is entry else answered.alias
            record.response_model = answered.alias
            record.output = output_of(response)
            if attempts:
                record.attributes["fmops.attempts"] = [a.__dict__ for a in attempts]
            await self._settle(record, answered, response)
            if run is not None:  # a redaction rewrites the answer in place: the caller's and the trace's
                await run.check_output(response)
            if call is not None:
                call.check_output(record, response)
            if cache_key is not None and self.cache is not None and ttl:
                await self.cache.put(cache_key, response, ttl)
            return ChatResult(response, record)
        except (FmopsError, ProviderError) as exc:
            record_failure(record, exc)
            raise traced(exc, record) from None
        except asyncio.CancelledError:
            record.fail("client disconnected")
            raise
        except Exception as exc:
            record.fail(internal_error(exc))  # e.g. the database went away: the span must not say ok
            raise
        finally:
            self._finish(record, durable=True)
            if record.durable_row is not None:  # strict
                await self._make_durable(record, req.timeout)

    async def stream(
        self,
        principal: Principal,
        req: ChatCompletionRequest,
        session_id: str | None = None,
        traceparent: str | bytes | None = None,
        *,
        tags: tuple[str, ...] = (),
    ) -> StreamResult:
        """Open the stream (retries and fallbacks happen before the first chunk), then relay it.

        Errors before the first chunk raise (a normal JSON error response); after it, the stream
        ends with an error event and `[DONE]`, and the span is marked as an error.
        """
        entry, call = await self._route(principal, req, session_id)
        policies = await self._policies(principal, req, call)
        if (call is not None and call.whole) or whole_stream(policies):
            # Its output is checked (schema, guardrails that rewrite or retry) before a word is
            # sent: run whole, replay.
            include_usage = req.include_usage
            if call is None:
                req = req.model_copy(update={"stream": False, "stream_options": None})
            done = await self._chat(
                principal, req, session_id, traceparent, entry, call, tags=tags, policies=policies
            )
            return StreamResult(replay(done.body, include_usage), done.record)
        req, body, record = self._open(
            principal, req, session_id, traceparent, call, tags=tags, policies=policies
        )
        try:
            entry, cache_key, ttl, cached = await self._prepare(record, req, body, entry, call)
            if cached is not None:
                if record.guardrails is not None:
                    await record.guardrails.check_output(cached)
                self._finish(record, durable=True)
                await self._make_durable(record, req.timeout)
                return StreamResult(replay(cached, req.include_usage), record)
            body["stream_options"] = {"include_usage": True}  # we always need usage for cost
            timeout = req.timeout or self.default_timeout
            chain = await self._chain(principal, entry, req.fallbacks)
            started = time.perf_counter()

            async def attempt(candidate: ModelEntry, limit: float) -> tuple[AsyncIterator[JSON], JSON]:
                iterator = self.provider(candidate).chat_stream(body, timeout=limit).__aiter__()
                try:
                    first = await asyncio.wait_for(iterator.__anext__(), timeout=limit)
                except StopAsyncIteration:
                    raise ProviderError("upstream ended the stream without a chunk", retryable=True) from None
                except TimeoutError:
                    await close_upstream(iterator)
                    raise ProviderError(
                        "no first chunk within the timeout", status=504, retryable=True
                    ) from None
                except BaseException:
                    await close_upstream(iterator)
                    raise
                return iterator, first

            (iterator, first), answered, attempts = await call_with_fallbacks(
                chain,
                attempt,
                deadline=time.monotonic() + timeout,
                breaker=self.breaker,
                breaker_key=lambda e: e.connection_id,
            )
        except (FmopsError, ProviderError) as exc:
            record_failure(record, exc)
            self._finish(record)
            raise traced(exc, record) from None
        except asyncio.CancelledError:
            record.fail("client disconnected before the stream started")
            self._finish(record)
            raise
        except Exception as exc:
            record.fail(internal_error(exc))  # without this the call would leave no span at all
            self._finish(record)
            raise
        record.ttft_ms = (time.perf_counter() - started) * 1000
        record.response_model = answered.alias
        if attempts:
            record.attributes["fmops.attempts"] = [a.__dict__ for a in attempts]
        name = call.name if call is not None else (req.model if answered is entry else answered.alias)
        events = self._relay(record, answered, iterator, first, name, req.include_usage, cache_key, ttl)
        return StreamResult(events, record)

    async def _relay(
        self,
        record: CallRecord,
        entry: ModelEntry,
        iterator: AsyncIterator[JSON],
        first: JSON,
        name: str,
        include_usage: bool,
        cache_key: str | None,
        ttl: int | None,
    ) -> AsyncIterator[bytes]:
        acc = StreamAccumulator()
        usage: JSON | None = None
        finished = gone = False
        # Output guardrails (block, flag) judge the text so far before each chunk is sent; a block
        # cuts the stream there: an error event, then `[DONE]`; the span keeps what was sent.
        run: GuardrailRun | None = (
            record.guardrails if record.guardrails and record.guardrails.output else None
        )
        cut: FmopsError | None = None
        try:
            chunk: JSON | None = first
            while chunk is not None:
                chunk["model"] = name
                # Providers report usage on their last chunk or on a chunk of its own; clients get
                # it the OpenAI way: a final chunk with no choices, and only when they asked.
                if chunk.get("usage"):
                    usage = chunk["usage"]
                chunk.pop("usage", None)
                if run is not None and (added := delta_text(chunk)):
                    cut = await run.check_stream(acc.text() + added)
                    if cut is not None:
                        break
                acc.add(chunk)
                if chunk.get("choices"):
                    yield encode(chunk)
                chunk = await next_chunk(iterator)
            if run is not None and cut is None:
                cut = await run.check_stream(acc.text(), final=True)
            if cut is not None:
                record.fail(cut.message)
                yield guardrail_error(cut)
            else:
                finished = True
            if finished and include_usage and usage:
                yield encode(
                    {
                        "id": acc.id,
                        "object": "chat.completion.chunk",
                        "created": acc.created,
                        "model": name,
                        "choices": [],
                        "usage": usage,
                    }
                )
        except ProviderError as exc:
            record.fail(f"stream failed after it started: {exc.message}")
            self.breaker.failure(entry.connection_id)
            yield stream_error(exc.message, "upstream_error")
        except Exception as exc:
            # Whatever went wrong, the client still gets an error event and `[DONE]`, and the span
            # says the call failed.
            log.exception("stream relay failed", extra={"trace": record.trace_id})
            record.fail(f"stream failed after it started: {type(exc).__name__}")
            yield stream_error(
                "the stream failed after it started; the error has been logged", "server_error"
            )
        except (asyncio.CancelledError, GeneratorExit):
            record.fail("client disconnected during the stream")
            gone = True
            raise
        finally:
            await close_upstream(iterator)
            record.output = acc.message()
            completed = {"usage": usage} if usage else {"usage": {"prompt_tokens": 0, "completion_tokens": 0}}
            await self._settle_quietly(record, entry, completed)
            if finished and cache_key and ttl and self.cache is not None:
                await self.cache.put(cache_key, acc.response(name, usage), ttl)
            self._finish(record, durable=True)
            if gone and record.durable_row is not None:
                await self._make_durable(record)  # strict: kept (spooled if need be) though no one listens
        try:
            await self._make_durable(record)  # strict: the trace is committed before `[DONE]`
        except FmopsError as exc:
            yield stream_error(exc.message, exc.code or "unavailable")
        yield DONE

    async def _settle_quietly(self, record: CallRecord, entry: ModelEntry, body: JSON) -> None:
        try:
            await asyncio.shield(self._settle(record, entry, body))
        except BaseException:
            log.warning("usage not settled for a cancelled stream", extra={"trace": record.trace_id})

    # --- embeddings and listing ----------------------------------------------------------------

    async def embeddings(
        self,
        principal: Principal,
        req: EmbeddingRequest,
        traceparent: str | bytes | None = None,
        *,
        tags: tuple[str, ...] = (),
    ) -> ChatResult:
        """`tags`: the caller's (the X-Fmops-Tags header's, checked); embeddings have no metadata."""
        return await self._embeddings(principal, req, traceparent, tags)

    async def _embeddings(
        self,
        principal: Principal,
        req: EmbeddingRequest,
        traceparent: str | bytes | None,
        tags: tuple[str, ...],
    ) -> ChatResult:
        record = CallRecord(principal=principal, model=req.model, kind="embedding", user=req.user, tags=tags)
        record.follow(traceparent)
        try:
            texts = req.texts()
            record.input = {"input": [t[:1000] for t in texts[:20]], "count": len(texts)}
            entry = await self.resolve(principal, req.model)
            caps = capabilities(entry)
            if not caps.embeddings:
                raise UserError(f"model {entry.alias!r} does not serve embeddings", param="model")
            if self.strict and self.tracing:
                self.tracer.admit()  # before the upstream is paid: can this call's span be kept?
            if self.limits is not None:
                record.admission = await self.limits.admit(principal, sum(len(t) for t in texts) // 4)
            result = await self.provider(entry).embed(texts, timeout=entry.timeout_seconds)
            vectors = [v[: req.dimensions] if req.dimensions else v for v in result.vectors]
            data = [
                {"object": "embedding", "index": i, "embedding": encode_vector(v, req.encoding_format)}
                for i, v in enumerate(vectors)
            ]
            body = {
                "object": "list",
                "data": data,
                "model": req.model,
                "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens},
            }
            record.response_model = entry.alias
            record.output = {"vectors": len(vectors), "dimensions": len(vectors[0]) if vectors else 0}
            await self._settle(record, entry, {"usage": {"prompt_tokens": result.input_tokens}})
            return ChatResult(body, record)
        except (FmopsError, ProviderError) as exc:
            record.fail(getattr(exc, "message", str(exc)))
            raise traced(exc, record) from None
        except asyncio.CancelledError:
            record.fail("client disconnected")
            raise
        except Exception as exc:
            record.fail(internal_error(exc))  # e.g. the database went away: the span must not say ok
            raise
        finally:
            self._finish(record, durable=True)
            if record.durable_row is not None:  # strict
                await self._make_durable(record)

    async def close(self) -> None:
        if self.endpoints is not None:
            self.endpoints.close()
        close = getattr(self.guardrails, "close", None)
        if close is not None:
            close()
        for provider in list(self._providers.values()):
            try:
                await provider.close()
            except Exception:
                log.exception("provider did not close cleanly")
        self._providers.clear()
