"""OpenAI chat requests and responses as the local engines see them: parsing, response and chunk
builders, stop sequences, and the relay from an engine's token stream to OpenAI chunks."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fmops.providers.base import JSON, ProviderError

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

# ---------------------------------------------------------------------------------------------
# OpenAI chat requests and responses, as the local engines see them
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """The parts of an OpenAI chat-completions body a local engine acts on."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    json_schema: dict[str, Any] | None = None  # response_format json_schema
    json_object: bool = False  # response_format json_object
    # The sampling settings the request or the model's defaults set, as opposed to the engine's
    # own defaults above (an engine that lacks one of them may then leave it out).
    given: frozenset[str] = frozenset()


@dataclass
class Outcome:
    """What one generation produced."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")


def bad_request(message: str, param: str | None = None) -> ProviderError:
    return ProviderError(message, status=400, body={"param": param} if param else None)


def _number(body: JSON, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"{key} must be a number between {low:g} and {high:g}", key)
    return float(value)


def _text_content(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(
                    f"messages[{index}]: this local model reads text only, not {kind!r}", "messages"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise bad_request(f"messages[{index}].content must be a string or a list of text parts", "messages")


def parse_chat_request(
    body: JSON, *, provider: str, defaults: dict[str, Any] | None = None, tools: bool = False
) -> ChatRequest:
    """Validate and normalise an OpenAI chat body; what the engine cannot honour is a 400, not a surprise.

    `defaults` are the configured model's sampling defaults (options such as temperature, top_k),
    used where the body sets nothing.
    """
    merged = {**(defaults or {}), **{k: v for k, v in body.items() if v is not None}}
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty list", "messages")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{i}] must be an object with a role", "messages")
        normal = {"role": message["role"], "content": _text_content(message.get("content"), i)}
        for key in ("name", "tool_calls", "tool_call_id"):
            if message.get(key) is not None:
                normal[key] = message[key]
        messages.append(normal)
    if body.get("tools") and body.get("tool_choice") != "none" and not tools:
        raise bad_request(f"the {provider} provider does not support tools; remove `tools`", "tools")
    if (body.get("n") or 1) != 1:
        raise bad_request(f"the {provider} provider generates one choice per request: set n to 1", "n")
    if body.get("logprobs"):
        raise bad_request(f"the {provider} provider does not return logprobs", "logprobs")

    max_tokens = merged.get("max_completion_tokens", merged.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise bad_request("max_tokens must be a positive integer", "max_tokens")
    seed = merged.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request("seed must be an integer", "seed")
    stop = merged.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise bad_request("stop must be a string or a list of at most 4 strings", "stop")
    top_k = merged.get("top_k", 40)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
        raise bad_request("top_k must be an integer of 0 or more (0 or -1: every token)", "top_k")
    top_k = max(top_k, 0)  # vLLM spells "no top-k" -1; llama.cpp and transformers 0
    # `repetition_penalty` is vLLM's and the transformers' name for llama.cpp's `repeat_penalty`.
    penalties = [body[k] for k in ("repeat_penalty", "repetition_penalty") if body.get(k) is not None]
    if len(penalties) > 1 and penalties[0] != penalties[1]:
        raise bad_request(
            "repetition_penalty and repeat_penalty are two names for one setting: send one of them",
            "repetition_penalty",
        )
    if penalties:
        merged["repeat_penalty"] = penalties[0]

    json_schema: dict[str, Any] | None = None
    json_object = False
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise bad_request(
                    "response_format.json_schema.schema must be a JSON schema object", "response_format"
                )
            json_schema = schema
        elif kind == "json_object":
            json_object = True
        elif kind != "text":
            raise bad_request(
                "response_format.type must be text, json_object or json_schema", "response_format"
            )

    return ChatRequest(
        model=str(body.get("model") or ""),
        messages=messages,
        max_tokens=max_tokens,
        temperature=_number(merged, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(merged, "top_p", 1.0, 0.0, 1.0),
        top_k=top_k,
        min_p=_number(merged, "min_p", 0.05, 0.0, 1.0),
        seed=seed,
        stop=tuple(s for s in stop if s),
        presence_penalty=_number(merged, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(merged, "frequency_penalty", 0.0, -2.0, 2.0),
        repeat_penalty=_number(merged, "repeat_penalty", 1.0, 0.0, 10.0),
        json_schema=json_schema,
        json_object=json_object,
        given=frozenset(
            k for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty") if k in merged
        ),
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_response(completion_id: str, model: str, outcome: Outcome, created: int | None = None) -> JSON:
    """An OpenAI `chat.completion` body."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text},
                "finish_reason": outcome.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": outcome.usage(),
    }


def chat_chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: JSON,
    finish_reason: str | None = None,
    usage: JSON | None = None,
) -> JSON:
    """An OpenAI `chat.completion.chunk`; the last one carries finish_reason and usage."""
    chunk: JSON = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


async def stream_chunks(items: AsyncIterator[str | Outcome], model: str) -> AsyncIterator[JSON]:
    """OpenAI chunks from an engine's stream of text pieces ended by its Outcome.

    The role chunk waits for the engine's first item, so a failure to load or start (and a
    timeout in the queue) raises before any chunk: the gateway can still answer with an error.
    """
    completion_id, created = new_completion_id(), int(time.time())
    started = False
    async for item in items:
        if not started:
            started = True
            yield chat_chunk(completion_id, model, created, {"role": "assistant", "content": ""})
        if isinstance(item, Outcome):
            yield chat_chunk(completion_id, model, created, {}, item.finish_reason, item.usage())
        else:
            yield chat_chunk(completion_id, model, created, {"content": item})


class StopMatcher:
    """Releases generated text as it comes, holding back a tail that may be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """(text now safe to send, whether a stop string ended the output)."""
        self.text += piece
        hits = [i for i in (self.text.find(stop, self.sent) for stop in self.stops) if i != -1]
        if hits:
            out, self.sent = self.text[self.sent : min(hits)], len(self.text)
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text) - self.sent), hold, -1):
                if self.text.endswith(stop[:k]):
                    hold = k
                    break
        end = len(self.text) - hold
        out, self.sent = self.text[self.sent : end], end
        return out, False

    def flush(self) -> str:
        out, self.sent = self.text[self.sent :], len(self.text)
        return out


# ---------------------------------------------------------------------------------------------
# Models: the packaged default and downloads
# ---------------------------------------------------------------------------------------------
