"""The quickstart's client of the REST API: what a script of the user's own would write with httpx.

Every stage goes through the public API and the OpenAI-compatible gateway, never the store, so the
quickstart proves the product as users drive it. A failed call raises `ApiError` with the server's
own message (the 4xx bodies say what to fix).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from fmops.errors import FmopsError

JSON = dict[str, Any]
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(FmopsError):
    """A call the server refused or could not answer; the message names the call and the reason."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:500]


class Api:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(method, path, 0, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError(method, path, response.status_code, _detail(response))
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return (
            self.call("POST", path, json=body, **kwargs)
            if body is not None
            else self.call("POST", path, **kwargs)
        )

    def patch(self, path: str, body: Any) -> Any:
        return self.call("PATCH", path, json=body)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def chat(self, body: JSON) -> tuple[JSON, str | None]:
        """One gateway call, as any OpenAI client makes it: the answer and the trace id the gateway gave."""
        path = "/v1/chat/completions"
        response = self.http.post(path, json=body)
        if response.status_code >= 400:
            raise ApiError("POST", path, response.status_code, _detail(response))
        return response.json(), response.headers.get("x-fmops-trace-id")

    def wait(
        self, path: str, on_update: Callable[[JSON], None] | None = None, *, poll_s: float = 1.0
    ) -> JSON:
        """GET `path` until its `status` is final; `on_update` sees each reading. A failed job raises."""
        while True:
            state: JSON = self.get(path)
            if on_update is not None:
                on_update(state)
            status = state.get("status")
            if status in TERMINAL:
                if status != "succeeded":
                    reason = state.get("error") or state.get("message") or status
                    raise ApiError("GET", path, 200, f"the job {status}: {reason}")
                return state
            time.sleep(poll_s)
