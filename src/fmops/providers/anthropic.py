"""Anthropic's Messages API (`POST /v1/messages`) behind the gateway's OpenAI chat-completions contract.

Requests are translated on the way out and answers (streams included) on the way back:

    OpenAI request                           Anthropic request
    system and developer messages       →    `system` (joined by blank lines)
    user / assistant / tool messages    →    alternating `messages` (same-role runs merged);
                                             tool messages become user `tool_result` blocks
    image_url parts                     →    image blocks (base64 data URLs, or http(s) URLs)
    assistant tool_calls                →    `tool_use` blocks
    max_tokens, max_completion_tokens   →    max_tokens (required there; else the model's
                                             `default_max_tokens` option, else 1024)
    stop, tools, tool_choice, user      →    stop_sequences, tools, tool_choice, metadata.user_id
    response_format json_object/schema  →    one forced tool whose input is the JSON answer

`top_k` is passed on. OpenAI's penalties and logit_bias, which Anthropic lacks, are dropped; the
sampling extras a caller chooses for a reason (seed, min_p, repetition_penalty, repeat_penalty) and
what would change the answer's shape (n > 1, logprobs, the deprecated `functions`) are refused with
a 400 naming them before any call.
Errors are normalised by the OpenAI provider's helpers: 429, 529 and 5xx are retryable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson

from fmops.providers import sse
from fmops.providers.base import (
    JSON,
    Capabilities,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderTimeout,
)
from fmops.providers.openai import post_json, upstream_connector, upstream_error, upstream_redirected

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
JSON_TOOL = "json_response"  # the forced tool's name when the json_schema has none

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# A stream's `error` event names a type instead of a status: these are the statuses Anthropic
# gives the same errors, so `upstream_error` decides what is retryable in one place.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


_UNSUPPORTED_SAMPLING = ("seed", "min_p", "repetition_penalty", "repeat_penalty")


def _refuse(message: str) -> ProviderError:
    """A request this provider cannot translate: the caller must change it."""
    return ProviderError(message, status=400, retryable=False)


# --- request: OpenAI → Anthropic ----------------------------------------------------------------


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text") or "") for part in content if part.get("type") == "text")


def _image(part: JSON) -> JSON:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise _refuse("an image_url part needs image_url.url")
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise _refuse("image data URLs must be base64-encoded: data:image/png;base64,…")
        media_type = header.removeprefix("data:").removesuffix(";base64")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _refuse("image_url.url must be an http(s) URL or a base64 data URL")


def _blocks(content: Any) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JSON] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part))
        else:
            raise _refuse(f"anthropic models do not accept {kind!r} content parts")
    return blocks


def _tool_use(call: JSON) -> JSON:
    fn = call.get("function") or {}
    try:
        arguments = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        raise _refuse(f"tool call {call.get('id')!r} has arguments that are not JSON") from None
    if not isinstance(arguments, dict):
        raise _refuse(f"tool call {call.get('id')!r} has arguments that are not a JSON object")
    return {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": arguments}


def _tool_result(message: JSON) -> JSON:
    content = message.get("content")
    return {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id"),
        "content": content if isinstance(content, str) else _blocks(content),
    }


def _messages(messages: list[JSON]) -> tuple[str | None, list[JSON]]:
    """Split off the system prompt and make user and assistant turns alternate."""
    system: list[str] = []
    turns: list[JSON] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            if text := _text(message.get("content")):
                system.append(text)
            continue
        if role == "user":
            blocks = _blocks(message.get("content"))
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            blocks = _blocks(message.get("content")) + [_tool_use(c) for c in calls]
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise _refuse(f"anthropic models do not take {role!r} messages; use tools and tool messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return ("\n\n".join(system) or None), turns


def _tools(tools: list[JSON]) -> list[JSON]:
    out: list[JSON] = []
    for tool in tools:
        if tool.get("type", "function") != "function":
            raise _refuse(f"anthropic models take function tools, not {tool.get('type')!r}")
        fn = tool.get("function") or {}
        spec: JSON = {
            "name": fn.get("name"),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        out.append(spec)
    return out


def _tool_choice(choice: Any) -> JSON:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    raise _refuse(f"tool_choice must be auto, none, required or a function, not {choice!r}")


def _forced_tool(response_format: JSON) -> JSON | None:
    """JSON output has no switch in the Messages API; a forced tool's input is the same guarantee."""
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return {
            "name": spec.get("name") or JSON_TOOL,
            "description": spec.get("description") or "Give the answer as this tool's input.",
            "input_schema": spec.get("schema") or {"type": "object"},
        }
    if kind == "json_object":
        return {
            "name": JSON_TOOL,
            "description": "Give the answer as this tool's input: one JSON object.",
            "input_schema": {"type": "object"},
        }
    return None


# --- response: Anthropic → OpenAI ---------------------------------------------------------------


def _usage(usage: JSON) -> JSON:
    """Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them."""
    cached = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + written + cached
    completion = int(usage.get("output_tokens") or 0)
    out: JSON = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _finish_reason(stop_reason: Any, *, called_tools: bool) -> str:
    reason = FINISH_REASONS.get(str(stop_reason), "stop")
    # A forced JSON tool is the answer itself, not a call the client must run.
    return "stop" if reason == "tool_calls" and not called_tools else reason


def _stream_error(event: JSON) -> ProviderError:
    kind = (event.get("error") or {}).get("type")
    return upstream_error(ERROR_STATUS.get(str(kind), 500), orjson.dumps(event).decode(), None)


class _StreamTranslator:
    """Anthropic stream events in, OpenAI `chat.completion.chunk` objects out.

    The role chunk waits for the first content block, so an error event before any content
    raises before the first chunk, while the gateway can still retry or fall back.
    """

    def __init__(self, model: str, json_tool: str | None, include_usage: bool) -> None:
        self.id: str | None = None
        self.model = model
        self.created = int(time.time())
        self.json_tool = json_tool
        self.include_usage = include_usage
        self.usage: JSON = {}
        self.stop_reason: Any = None
        self.started = False
        self.done = False
        self.calls: dict[int, int] = {}  # content block index → OpenAI tool call index
        self.json_blocks: set[int] = set()
        self.with_arguments: set[int] = set()

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _arguments(self, block: int, fragment: str) -> JSON:
        self.with_arguments.add(block)
        call = {"index": self.calls[block], "function": {"arguments": fragment}}
        return self._chunk({"tool_calls": [call]})

    def _start(self) -> list[JSON]:
        if self.started:
            return []
        self.started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _add_usage(self, usage: JSON | None) -> None:
        self.usage.update({k: v for k, v in (usage or {}).items() if v is not None})

    def feed(self, event: JSON) -> list[JSON]:
        kind = event.get("type")
        index = int(event.get("index") or 0)
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id")
            self.model = message.get("model") or self.model
            self._add_usage(message.get("usage"))
            return []
        if kind == "content_block_start":
            out = self._start()
            block = event.get("content_block") or {}
            if block.get("type") == "text" and block.get("text"):
                out.append(self._chunk({"content": block["text"]}))
            elif block.get("type") == "tool_use" and block.get("name") == self.json_tool:
                self.json_blocks.add(index)
            elif block.get("type") == "tool_use":
                self.calls[index] = len(self.calls)
                call = {
                    "index": self.calls[index],
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
                if block.get("input"):
                    out.append(self._arguments(index, orjson.dumps(block["input"]).decode()))
            return out
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            fragment = delta.get("partial_json") if delta.get("type") == "input_json_delta" else None
            if fragment and index in self.json_blocks:
                return [self._chunk({"content": fragment})]
            if fragment and index in self.calls:
                return [self._arguments(index, fragment)]
            return []  # thinking and signature deltas have no OpenAI counterpart
        if kind == "content_block_stop":
            if index in self.calls and index not in self.with_arguments:
                return [self._arguments(index, "{}")]  # a call without arguments still sends JSON
            return []
        if kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            self._add_usage(event.get("usage"))
            return []
        if kind == "message_stop":
            self.done = True
            out = self._start()
            finish = _finish_reason(self.stop_reason or "end_turn", called_tools=bool(self.calls))
            out.append(self._chunk({}, finish))
            if self.include_usage:
                usage_chunk = self._chunk({})
                usage_chunk["choices"] = []
                usage_chunk["usage"] = _usage(self.usage)
                out.append(usage_chunk)
            return out
        if kind == "error":
            raise _stream_error(event)
        return []  # ping, and event types added after this was written


# --- the provider -------------------------------------------------------------------------------


class AnthropicProvider(Provider):
    name = "anthropic"
    capabilities: ClassVar[Capabilities] = Capabilities(streaming=True, tools=True, json_schema=True)

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
        self.url = f"{base_url}/v1/messages"
        self._session: aiohttp.ClientSession | None = None
        self._headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=upstream_connector(), headers=self._headers)
        return self._session

    def request(self, body: JSON, *, stream: bool) -> tuple[JSON, str | None]:
        """The Messages API body for an OpenAI one, and the forced JSON tool's name if there is one."""
        if int(body.get("n") or 1) > 1:
            raise _refuse("anthropic models return one choice; n must be 1")
        if body.get("logprobs"):
            raise _refuse("anthropic models do not return logprobs")
        if body.get("functions") or body.get("function_call"):
            raise _refuse("anthropic models take `tools`, not the deprecated `functions`")
        for key in _UNSUPPORTED_SAMPLING:
            if body.get(key) is not None:
                raise ProviderError(
                    f"anthropic models have no `{key}`: remove it from the request",
                    status=400,
                    retryable=False,
                    body={"param": key},
                )
        system, messages = _messages(body.get("messages") or [])
        max_tokens = (
            body.get("max_completion_tokens")
            or body.get("max_tokens")
            or self.config.options.get("default_max_tokens")
            or DEFAULT_MAX_TOKENS
        )
        payload: JSON = {"model": self.config.model, "max_tokens": int(max_tokens), "messages": messages}
        if system:
            payload["system"] = system
        for key in ("temperature", "top_p", "top_k"):
            if body.get(key) is not None:
                payload[key] = body[key]
        stop = body.get("stop")
        if stop:
            payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if body.get("tools"):
            payload["tools"] = _tools(body["tools"])
            choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") else None
            if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
                choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
            if choice:
                payload["tool_choice"] = choice
        forced = _forced_tool(body.get("response_format") or {})
        if forced is not None:
            if body.get("tools"):
                raise _refuse("anthropic models cannot combine tools with a JSON response_format")
            payload["tools"] = [forced]
            payload["tool_choice"] = {"type": "tool", "name": forced["name"]}
        if body.get("user"):
            payload["metadata"] = {"user_id": body["user"]}
        if stream:
            payload["stream"] = True
        return payload, forced["name"] if forced else None

    def response(self, data: JSON, json_tool: str | None) -> JSON:
        """An OpenAI chat completion for a Messages API answer."""
        text: list[str] = []
        calls: list[JSON] = []
        for block in data.get("content") or []:
            if block.get("type") == "text":
                text.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use" and block.get("name") == json_tool:
                text.append(orjson.dumps(block.get("input") or {}).decode())
            elif block.get("type") == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
        message: JSON = {"role": "assistant", "content": "".join(text) if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        finish = _finish_reason(data.get("stop_reason") or "end_turn", called_tools=bool(calls))
        return {
            "id": data.get("id"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model") or self.config.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(data.get("usage") or {}),
        }

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        payload, json_tool = self.request(body, stream=False)
        data = await post_json(self._client(), self.url, orjson.dumps(payload), timeout)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise ProviderError("upstream returned JSON without `content`", retryable=True)
        return self.response(data, json_tool)

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        payload, json_tool = self.request(body, stream=True)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        translator = _StreamTranslator(self.config.model, json_tool, include_usage)
        # `timeout` bounds the wait for each piece, not the whole (a long answer may stream for minutes).
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        try:
            async with self._client().post(
                self.url, data=orjson.dumps(payload), timeout=client_timeout, allow_redirects=False
            ) as resp:
                if resp.status >= 400:
                    text = (await resp.read()).decode(errors="replace")
                    raise upstream_error(resp.status, text, resp.headers)
                if resp.status >= 300:
                    raise upstream_redirected(resp.status)
                try:
                    async for event in sse.decode(resp.content.iter_any()):
                        try:
                            data = orjson.loads(event.data)
                        except orjson.JSONDecodeError:
                            data = None
                        if not isinstance(data, dict):
                            raise ProviderError(
                                "upstream sent a stream event that is not a JSON object", retryable=True
                            )
                        for chunk in translator.feed(data):
                            yield chunk
                        if translator.done:
                            return
                finally:
                    if not translator.done:
                        resp.close()  # closed early (client gone, error): drop the connection, not reuse it
        except TimeoutError:
            raise ProviderTimeout() from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise ProviderError(f"upstream stream broke: {type(exc).__name__}", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"cannot reach the upstream: {type(exc).__name__}", retryable=True) from None
        except ValueError:  # an event over the decoder's size limit, or bytes that are not UTF-8
            raise ProviderError("upstream sent a malformed stream", retryable=True) from None
        raise ProviderError("upstream ended the stream before message_stop", retryable=True)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)
