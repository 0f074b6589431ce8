"""Exceptions raised by fmops services.

FmopsError                  base; carries an HTTP status and an OpenAI-style error type/code
├── ConfigError             invalid settings; stops start-up (not an HTTP error)
├── UserError (400)         the caller sent something wrong; the message says what to fix
│   ├── NotFound (404)      unknown object, or one in another project
│   ├── Conflict (409)      name taken, state does not allow the action
│   └── PayloadTooLarge (413)
├── AuthenticationError (401)  missing, malformed, unknown, revoked or expired key
├── PermissionDenied (403)  the key's role may not do this
└── Unavailable (503)       a dependency (database, upstream) is down; retry later
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class FmopsError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None
    trace_id: str | None = None  # set when the failure was recorded as a span

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(FmopsError):
    error_type = "config_error"


class UserError(FmopsError):
    status_code = 400
    error_type = "invalid_request_error"


def invalid_config(exc: ValidationError, what: str) -> UserError:
    """One 400 for a plugin's config that did not validate, naming each bad field
    (`invalid config for <what>: config.<field>: why; ...`); `param` is the first of them."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"config.{where}: {message}" if where else f"config: {message}")
    first = exc.errors()[0]["loc"]
    param = "config." + ".".join(str(p) for p in first) if first else "config"
    return UserError(f"invalid config for {what}: " + "; ".join(problems), param=param)


class NotFound(UserError):
    status_code = 404
    code = "not_found"


class Conflict(UserError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(UserError):
    status_code = 413
    code = "payload_too_large"


class AuthenticationError(FmopsError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(FmopsError):
    status_code = 403
    error_type = "permission_error"
    code = "insufficient_role"


class Unavailable(FmopsError):
    status_code = 503
    error_type = "server_error"
    code = "unavailable"
    retry_after: float | None = None  # seconds, sent as Retry-After (default 5)
