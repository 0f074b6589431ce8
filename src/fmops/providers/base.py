"""The provider interface: what every model backend (local engine or remote API) implements.

Requests and responses travel in OpenAI's chat-completions wire format (plain dicts, validated at
the gateway's edge), because that is the gateway's contract and the format most upstreams speak:
the OpenAI-compatible provider forwards them as they are, the others translate.

    ProviderError                 an upstream failure, normalised
    ├── retryable=True            429, 5xx, timeouts, connection errors: retry / fall back / cool down
    └── retryable=False           4xx the caller must fix: returned as it is
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

JSON = dict[str, Any]
# The option naming where a model's files are in the artifact store, by option ("model", a path
# option), as JSON text (options hold scalars): `{option: {"prefix", "files": {name: sha256}, "file":
# bool}}`. Set by fine-tune jobs and the operator, never over the API.
STORED_OPTION = "stored"


@dataclass(frozen=True)
class Capabilities:
    """Facts callers read instead of branching on provider names."""

    chat: bool = True
    streaming: bool = True
    tools: bool = False
    json_schema: bool = False
    embeddings: bool = False
    local: bool = False  # runs in this process: its concurrency is queued, not fanned out


@dataclass(frozen=True)
class ProviderConfig:
    """How to reach one model: the provider-side id plus connection details the admin configured."""

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    # The artifact store's copy of a file option ("model", a path option) where `options.stored` names
    # one (a fine-tune's outputs on S3): fetched into this machine's cache, or None. Unset: no store.
    fetch: Callable[[str], Path | None] | None = field(default=None, repr=False, compare=False)


class ProviderError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retryable: bool = False,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body


class ProviderTimeout(ProviderError):
    def __init__(self, message: str = "the upstream did not answer in time") -> None:
        super().__init__(message, status=504, retryable=True)


@dataclass
class Embeddings:
    vectors: list[list[float]]
    input_tokens: int


class Provider(ABC):
    """One instance per configured model; the gateway keeps it (and its connection pool) alive."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Options that name files (besides `model`): over the API they must lie under $FMOPS_HOME/models.
    path_options: ClassVar[frozenset[str]] = frozenset()
    # Options only the operator's CLI may set (they launch a process, or name a file another host
    # reads): the API refuses them.
    operator_options: ClassVar[frozenset[str]] = frozenset()
    # Models whose provider starts something of its own (a managed server) are started with fmops up.
    starts_with_server: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def local_path(self, option: str, value: str) -> Path:
        """`value` (the model, or the path option `option`) as a local path. Where this machine lacks
        it and the artifact store holds it (`options.stored`), the store's copy, fetched once per
        machine: a gateway serves a fine-tune trained elsewhere. Call it where the engine loads."""
        path = Path(value).expanduser()
        if path.exists() or self.config.fetch is None:
            return path
        return self.config.fetch(option) or path

    @classmethod  # noqa: B027 - an optional hook: most providers check nothing more
    def check_options(cls, model: str, options: dict[str, Any]) -> None:
        """Refuse options that would fail later (raise a UserError naming the option)."""

    @abstractmethod
    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        """A non-streaming chat completion: OpenAI request body in, OpenAI response body out."""

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        """Streamed chat completion chunks (OpenAI `chat.completion.chunk` objects).

        The default runs `chat` and replays it as one chunk, for providers that cannot stream.
        Closing the iterator (client gone) must cancel the upstream work.
        """
        response = await self.chat(body, timeout=timeout)
        choice = (response.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        yield {
            "id": response.get("id"),
            "object": "chat.completion.chunk",
            "created": response.get("created"),
            "model": response.get("model"),
            "choices": [
                {
                    "index": 0,
                    "delta": {k: v for k, v in message.items() if v is not None},
                    "finish_reason": choice.get("finish_reason"),
                }
            ],
            "usage": response.get("usage"),
        }

    async def embed(self, inputs: list[str], *, timeout: float) -> Embeddings:
        raise ProviderError(f"{self.name} models do not serve embeddings", status=400)

    async def start(self) -> None:  # noqa: B027 - optional hook; most providers start on first use
        """Begin what the first call would otherwise wait for (launch a server); return at once."""

    async def close(self) -> None:  # noqa: B027 - optional hook; most providers hold nothing
        """Release connections, threads or model memory."""
