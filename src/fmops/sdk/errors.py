"""Errors the SDK raises when talking to an fmops server.

FmopsSDKError                 base of everything below
├── APIConnectionError        the server could not be reached, or did not answer in time
└── APIError                  the server answered with an error status; `status`, `message`, `code`
    ├── BadRequestError (400) the request was wrong; the message says what to fix
    ├── AuthenticationError (401)  missing, unknown, revoked or expired API key
    ├── PermissionDeniedError (403)  the key's role may not do this
    ├── NotFoundError (404)   no such trace (or other object) in the key's project
    ├── ConflictError (409)
    └── RateLimitError (429)  a rate limit or budget is reached; see `retry_after`

Tracing never raises any of these into an application: spans are sent in the background and a
failed export is logged by OpenTelemetry's exporter.
"""

from __future__ import annotations

from typing import Any

import httpx


class FmopsSDKError(Exception):
    """Base of the SDK's errors."""


class APIConnectionError(FmopsSDKError):
    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIError(FmopsSDKError):
    """The server answered with an error status; its OpenAI-shaped error body is parsed into fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,  # the error body's field name
        code: str | None = None,
        param: str | None = None,
        body: Any = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before retrying (429 and 503), when it said."""
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class BadRequestError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class RateLimitError(APIError):
    pass


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error response; the message falls back to the body's text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        message = str(detail.get("message") or response.reason_phrase)
        fields = {k: detail.get(k) for k in ("type", "code", "param")}
        kwargs = {k: str(v) for k, v in fields.items() if v is not None}
    else:
        message = (body if isinstance(body, str) and body else response.reason_phrase) or "error"
        kwargs = {}
    cls = _BY_STATUS.get(response.status_code, APIError)
    return cls(
        response.status_code,
        message,
        type=kwargs.get("type"),
        code=kwargs.get("code"),
        param=kwargs.get("param"),
        body=body,
        headers=response.headers,
    )
