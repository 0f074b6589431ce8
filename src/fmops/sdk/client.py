"""`fmops.Client`: the REST API (traces, feedback, prompts) and the gateway through the OpenAI SDK."""

from __future__ import annotations

import functools
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx

from fmops.sdk import tracing
from fmops.sdk.datasets import Datasets
from fmops.sdk.errors import APIConnectionError, error_from_response
from fmops.sdk.models import Score
from fmops.sdk.prompts import DEFAULT_CACHE_SECONDS, Prompts
from fmops.sdk.propagation import ainject_traceparent, inject_traceparent
from fmops.sdk.traces import Traces
from fmops.sdk.tracing import Destination

if TYPE_CHECKING:
    import openai as openai_sdk  # `openai` is the name of a Client property

_INSTALL_OPENAI = "client.openai needs the OpenAI SDK: pip install openai"


class Client:
    """A connection to an fmops server.

        client = fmops.Client()  # FMOPS_BASE_URL (default http://127.0.0.1:8000), FMOPS_API_KEY
        answer = client.openai.chat.completions.create(model="support-bot", messages=[...])
        client.feedback(trace_id, thumbs=True)

    The first Client made with an API key is also where `@fmops.observe` spans are sent, unless
    `fmops.configure(...)` said otherwise. `client.prompts` reads the prompt registry; fetched
    prompts are cached for `prompt_cache_seconds` (0: always fetch).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        prompt_cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ):
        destination = Destination.resolve(base_url, api_key)
        self.base_url = destination.base_url
        self.api_key = destination.api_key
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=self._auth_headers(), timeout=timeout)
        self.traces = Traces(self)
        self.prompts = Prompts(self, cache_seconds=prompt_cache_seconds)
        self.datasets = Datasets(self)
        tracing.adopt(destination)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @functools.cached_property
    def openai(self) -> openai_sdk.OpenAI:
        """The official OpenAI client pointed at the gateway (`<base_url>/v1`); each request carries
        the current fmops span's `traceparent`, so the gateway's span joins the application's trace."""
        self._need_key()
        try:
            from openai import DefaultHttpxClient, OpenAI
        except ImportError as error:
            raise ImportError(_INSTALL_OPENAI) from error
        # The OpenAI SDK's own HTTP client class (httpx or its successor, by version), plus our hook.
        http = DefaultHttpxClient(timeout=self.timeout, event_hooks={"request": [inject_traceparent]})
        return OpenAI(base_url=self.base_url + "/v1", api_key=self.api_key, http_client=http)

    @functools.cached_property
    def async_openai(self) -> openai_sdk.AsyncOpenAI:
        """`openai.AsyncOpenAI` pointed at the gateway, with the same traceparent header."""
        self._need_key()
        try:
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient
        except ImportError as error:
            raise ImportError(_INSTALL_OPENAI) from error
        http = DefaultAsyncHttpxClient(timeout=self.timeout, event_hooks={"request": [ainject_traceparent]})
        return AsyncOpenAI(base_url=self.base_url + "/v1", api_key=self.api_key, http_client=http)

    def _need_key(self) -> None:
        if self.api_key is None:
            raise ValueError("no fmops API key: set FMOPS_API_KEY or pass api_key to fmops.Client(...)")

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Call a route of the REST API; its JSON answer, or a typed APIError."""
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        return self._send(method, path, params=query, json=json)

    def request_content(self, method: str, path: str, content: str, content_type: str) -> Any:
        """Call a route with a body that is not JSON (e.g. a YAML prompt file)."""
        return self._send(method, path, content=content.encode(), headers={"Content-Type": content_type})

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise APIConnectionError(
                f"fmops at {self.base_url} did not answer within {self.timeout}s", request=error.request
            ) from error
        except httpx.TransportError as error:
            raise APIConnectionError(
                f"cannot reach fmops at {self.base_url} ({error}); is the server running? "
                "Set FMOPS_BASE_URL or pass base_url",
                request=error.request,
            ) from error
        if response.is_error:
            raise error_from_response(response)
        return response.json() if response.content else None

    def feedback(
        self,
        trace_id: str,
        *,
        thumbs: bool | None = None,
        score: float | None = None,
        label: str | None = None,
        comment: str | None = None,
        corrected_output: Any = None,
        name: str | None = None,
        span_id: str | None = None,
        source: Literal["human", "evaluator", "api"] | None = None,
    ) -> Score:
        """Score a trace (or one of its spans): one of thumbs, score, label or corrected_output, each
        with an optional comment, or a comment alone. A label may carry a score as its value.

            client.feedback(trace_id, thumbs=False, comment="wrong city")
            client.feedback(trace_id, score=0.8, name="helpfulness")
        """
        body: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id, "name": name, "source": source}
        signals = [s for s, v in (("thumbs", thumbs), ("label", label)) if v is not None]
        signals += ["corrected_output"] if corrected_output is not None else []
        if score is not None and label is None:
            signals.append("score")
        if len(signals) > 1:
            raise ValueError(
                f"give one of thumbs, score, label or corrected_output per call, not {' and '.join(signals)}"
            )
        if thumbs is not None:
            body.update(kind="thumbs", value=thumbs)
        elif label is not None:
            body.update(kind="label", label=label, value=score)
        elif corrected_output is not None:
            body.update(kind="correction", corrected_output=corrected_output)
        elif score is not None:
            body.update(kind="number", value=score)
        elif comment is None:
            raise ValueError("give thumbs, score, label, corrected_output or comment")
        else:
            body["kind"] = "comment"
        body["comment"] = comment
        payload = {k: v for k, v in body.items() if v is not None}
        return Score.model_validate(self.request("POST", "/api/feedback", json=payload))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Send every traced span ended so far (they are otherwise sent in the background, and at exit)."""
        return tracing.flush(timeout_s)

    def close(self) -> None:
        """Close the HTTP connections (tracing goes on: spans are sent until the process exits)."""
        self._http.close()
        if "openai" in self.__dict__:
            self.openai.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fmops.Client {self.base_url}>"


def _query_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
