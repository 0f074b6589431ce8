"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, TGI, llama.cpp server, Together, Groq…

Requests are forwarded as they are (only `model` is replaced by the provider-side id). Plain
(non-streaming) chat calls and embeddings go over the lean keep-alive client of http1.py, streams over
one pooled aiohttp session per upstream: the HTTP client dominates a gateway's overhead, aiohttp is
several times faster than httpx under load, and http1.py saves aiohttp's per-request objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from fmops.logs import redact
from fmops.providers import sse
from fmops.providers.base import (
    JSON,
    Capabilities,
    Embeddings,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderTimeout,
)
from fmops.providers.http1 import Client, UpstreamUnreachable

if TYPE_CHECKING:
    import aiohttp

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def upstream_error(status: int, text: str, headers: Any) -> ProviderError:
    """Normalise an upstream error response; 429/5xx/408 are worth retrying elsewhere."""
    message = text[:500]
    try:
        parsed = orjson.loads(text)
        if isinstance(parsed, dict):
            err = parsed.get("error")
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                message = err["message"]
            elif isinstance(err, str):
                message = err
    except orjson.JSONDecodeError:
        pass
    retryable = status in (408, 409, 429) or status >= 500
    return ProviderError(
        f"upstream returned {status}: {redact(message)}",
        status=status if status < 500 else 502,
        retryable=retryable,
        retry_after=retry_after_seconds(headers),
    )


def upstream_redirected(status: int) -> ProviderError:
    # Never followed: a redirect could send the request, and the provider key with it, anywhere
    # (an internal service, a metadata address) past the checks on the model's base URL.
    return ProviderError(
        f"the upstream answered with a redirect (HTTP {status}), which fmops does not follow; "
        "set the model's base_url to the final URL",
        status=502,
        retryable=True,
    )


def upstream_connector() -> aiohttp.TCPConnector:
    """Pooled connections to one upstream; every DNS answer is checked again (UpstreamResolver).

    aiohttp is imported here, for streams: ~0.1 s of start-up (its module builds two
    TLS contexts) that a command making only plain calls (`fmops eval run`) does without."""
    import aiohttp

    from fmops.providers.resolver import UpstreamResolver

    return aiohttp.TCPConnector(
        limit=1000, ttl_dns_cache=300, enable_cleanup_closed=True, resolver=UpstreamResolver()
    )


async def post_json(session: aiohttp.ClientSession | Client, url: str, payload: bytes, timeout: float) -> Any:
    """POST a JSON body and return the parsed JSON answer, every failure as a ProviderError.

    Over an aiohttp session or the lean client (http1.py): the same answers, the same errors.
    """
    if isinstance(session, Client):
        try:
            answer = await session.post(url, payload, timeout)
        except TimeoutError:
            raise ProviderTimeout() from None
        except UpstreamUnreachable as exc:
            raise ProviderError(f"cannot reach the upstream: {exc.kind}", retryable=True) from None
        return json_answer(answer.status, answer.body, answer.headers)
    import aiohttp

    try:
        async with session.post(
            url, data=payload, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            raw = await resp.read()
            status, headers = resp.status, resp.headers
    except TimeoutError:
        raise ProviderTimeout() from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"cannot reach the upstream: {type(exc).__name__}", retryable=True) from None
    return json_answer(status, raw, headers)


def json_answer(status: int, raw: bytes, headers: Any) -> Any:
    """The parsed JSON of an upstream's whole answer; an error status or a redirect as a ProviderError."""
    if status >= 400:
        raise upstream_error(status, raw.decode(errors="replace"), headers)
    if status >= 300:
        raise upstream_redirected(status)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProviderError("upstream returned a body that is not JSON", retryable=True) from None


class OpenAIProvider(Provider):
    name = "openai"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True, tools=True, json_schema=True, embeddings=True
    )

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._lean: Client | None = None
        self._headers = {"Content-Type": "application/json"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=upstream_connector(),
                headers=self._headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
        return self._session

    def _plain_client(self) -> Client:
        """The lean client of plain calls (http1.py): same headers, pool limit and checks as _client."""
        if self._lean is None or self._lean.closed:
            self._lean = Client(self._headers)
        return self._lean

    def _payload(self, body: JSON, stream: bool) -> bytes:
        payload = dict(body)
        payload["model"] = self.config.model
        payload["stream"] = stream
        if not stream:
            payload.pop("stream_options", None)
        return orjson.dumps(payload)

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        url = f"{self.base_url}/chat/completions"
        data = await post_json(self._plain_client(), url, self._payload(body, False), timeout)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise ProviderError("upstream returned JSON without `choices`", retryable=True)
        return data

    async def chat_stream(self, body: JSON, *, timeout: float) -> AsyncIterator[JSON]:
        import aiohttp

        url = f"{self.base_url}/chat/completions"
        # `timeout` bounds the wait for each piece, not the whole (a long answer may stream for minutes).
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        try:
            async with self._client().post(
                url, data=self._payload(body, True), timeout=client_timeout, allow_redirects=False
            ) as resp:
                if resp.status >= 400:
                    text = (await resp.read()).decode(errors="replace")
                    raise upstream_error(resp.status, text, resp.headers)
                if resp.status >= 300:
                    raise upstream_redirected(resp.status)
                async for event in sse.decode(resp.content.iter_any()):
                    if event.data.strip() == "[DONE]":
                        return
                    try:
                        chunk = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        raise ProviderError(
                            "upstream sent a stream event that is not JSON", retryable=True
                        ) from None
                    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                        raise upstream_error(502, event.data, None)
                    yield chunk
        except TimeoutError:
            raise ProviderTimeout() from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise ProviderError(f"upstream stream broke: {type(exc).__name__}", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"cannot reach the upstream: {type(exc).__name__}", retryable=True) from None
        except ValueError as exc:  # from the SSE decoder: bytes that are not UTF-8, an oversized event
            raise ProviderError(f"upstream sent a malformed stream: {exc}", retryable=True) from None

    async def embed(self, inputs: list[str], *, timeout: float) -> Embeddings:
        url = f"{self.base_url}/embeddings"
        payload = orjson.dumps({"model": self.config.model, "input": inputs})
        data = await post_json(self._plain_client(), url, payload, timeout)
        try:
            rows = sorted(data["data"], key=lambda r: r.get("index", 0))
            vectors = [list(map(float, r["embedding"])) for r in rows]
            tokens = int((data.get("usage") or {}).get("prompt_tokens", 0))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ProviderError("upstream returned a malformed embeddings body", retryable=True) from None
        return Embeddings(vectors=vectors, input_tokens=tokens)

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)
