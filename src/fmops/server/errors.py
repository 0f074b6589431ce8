"""Every error leaves the server in OpenAI's error shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError
from starlette.exceptions import HTTPException

from fmops.errors import FmopsError
from fmops.logs import redact

log = logging.getLogger(__name__)

_TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error"}

ERROR_DESCRIPTIONS = {
    400: "Invalid request; the message says what to fix",
    401: "Missing, malformed, unknown, revoked or expired API key",
    403: "The key's role may not do this",
    404: "No such object in the key's project",
    409: "The object's current state does not allow this (name taken, job finished, last admin)",
    413: "Request body larger than the limit (setting FMOPS_MAX_BODY_BYTES)",
    422: "The answer was refused: an endpoint's output guardrail or output schema (the trace has it)",
    429: "A rate limit or budget of the key or project is reached; see Retry-After",
    502: "The model's upstream failed after retries and fallbacks",
    503: "A dependency (the database, or every upstream cooling down) is unavailable; retry later",
    504: "The model did not answer within the request's deadline",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error shape, used by every error response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: error statuses it can answer besides the common ones.

    The common ones (400, 401, 403, 404, 413) are added to the OpenAPI document by the app factory
    from what a route takes; list here only what its handler decides (e.g. 409).
    """
    return {s: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


def _unencodable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is a JSON encoder refusing a value: an integer beyond 64 bits
    or an unpaired surrogate, both of which Python's JSON parser accepts from a request body."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, orjson.JSONEncodeError) or (
            isinstance(seen, UnicodeEncodeError) and "surrogate" in str(seen)
        ):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return False


def _encodable(text: str) -> str:
    """An error that quotes the caller's input may quote a lone surrogate, which no JSON encoder
    writes: show it escaped (\\ud800) rather than fail to answer at all."""
    return text.encode("utf-8", "backslashreplace").decode()


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "message": redact(_encodable(message)),
            "type": error_type
            or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": None if param is None else _encodable(param),
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _tags(schema: Any, field: str) -> set[str]:
    """Every value a JSON schema allows for `field` (a discriminator) in any of its objects."""
    found: set[str] = set()
    if isinstance(schema, dict):
        spec = (schema.get("properties") or {}).get(field)
        if isinstance(spec, dict):
            values = [spec["const"]] if "const" in spec else spec.get("enum") or []
            found.update(str(v) for v in values)
        for value in schema.values():
            found |= _tags(value, field)
    elif isinstance(schema, list):
        for value in schema:
            found |= _tags(value, field)
    return found


def _allowed_tags(request: Request | None, field: str) -> list[str]:
    """The values the route's body allows for a discriminator, read from the body's schema."""
    route = request.scope.get("route") if request is not None else None
    body = getattr(route, "body_field", None)
    annotation = getattr(getattr(body, "field_info", None), "annotation", None)
    if annotation is None:
        return []
    try:
        return sorted(_tags(TypeAdapter(annotation).json_schema(), field))
    except Exception:  # a schema that cannot be generated: the message says less, never fails
        return []


def _describe_validation(
    exc: RequestValidationError, content_type: str = "", request: Request | None = None
) -> tuple[str, str | None]:
    parts, first = [], None
    for item in exc.errors()[:10]:
        loc = [str(p) for p in item.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            where = ".".join(loc[1:]) or loc[0]
            label = where if loc[0] == "body" else f"{loc[0]} parameter {where}"
        else:
            label = ".".join(loc) or "request"
        first = first or (".".join(loc[1:]) or None)
        msg = str(item.get("msg", "invalid"))
        if item.get("type") == "json_invalid":
            ctx = item.get("ctx") or {}
            msg = f"request body is not valid JSON ({ctx.get('error', 'parse error')})"
            label = "body"
            first = None
        elif item.get("type") == "union_tag_invalid":
            # A body told apart by a field (e.g. a score's `kind`): name that field.
            tag = str((item.get("ctx") or {}).get("discriminator", "")).strip("'")
            label = ".".join([*loc[1:], tag]) if tag else label
            first = label if tag else first
        elif item.get("type") == "union_tag_not_found":
            # A body told apart by a field that it lacks: name the field and what it may be.
            tag = str((item.get("ctx") or {}).get("discriminator", "")).strip("'")
            label = ".".join([*loc[1:], tag])
            first = first or label
            allowed = _allowed_tags(request, tag)
            msg = "missing" + (f"; one of {', '.join(allowed)}" if allowed else "")
        elif loc == ["body"] and item.get("type") != "value_error":
            # The body as a whole: absent, or not a JSON object. (A `value_error` here is a
            # model-level check, e.g. `base_url` sent per request: its own message says what to fix.)
            msg = "missing; send a JSON object" if item.get("type") == "missing" else "must be a JSON object"
            if "json" not in content_type:
                msg += " with `Content-Type: application/json`"
        parts.append(f"{label}: {msg}")
    return "; ".join(parts) or "invalid request", first


def fmops_error_response(exc: FmopsError) -> JSONResponse:
    headers = {"Retry-After": "5"} if exc.status_code == 503 else {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after):
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
    if exc.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if exc.trace_id is not None:
        headers["x-fmops-trace-id"] = exc.trace_id  # a failed gateway call has a span too
    return error_response(
        exc.status_code,
        exc.message,
        error_type=exc.error_type,
        param=exc.param,
        code=exc.code,
        headers=headers or None,
    )


def database_unavailable_response(exc: DBAPIError) -> JSONResponse:
    """The database is down, cut off or locked past its busy timeout: 503 and when to retry, never
    the driver's message (it may name hosts, and "database is locked" says nothing to a caller)."""
    log.error("database unavailable", extra={"error": str(exc.orig)[:200]})
    return error_response(
        503,
        "the metadata database is unavailable; retry shortly",
        code="database_unavailable",
        headers={"Retry-After": "5"},
    )


def is_database_down(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def validation_error_response(
    exc: RequestValidationError, content_type: str, request: Request | None = None
) -> JSONResponse:
    message, param = _describe_validation(exc, content_type, request)
    return error_response(400, message, param=param, code="invalid_request")


def _allowed_methods(request: Request) -> str:
    """Every method served at the request's path (RFC 9110 15.5.6).

    Each method of a path is a route of its own, and Starlette's 405 names only the methods of the
    first route whose path matched.
    """
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]  # routes match below the mount point, as Starlette's router does
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FmopsError)
    async def _fmops(_: Request, exc: FmopsError) -> JSONResponse:
        return fmops_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc, request.headers.get("content-type", ""), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if message == "There was an error parsing the body":
            message = "request body could not be parsed: send UTF-8 encoded JSON"
        elif exc.status_code == 404 and message == "Not Found":
            message = "no such route; see /openapi.json for the API"
        elif exc.status_code == 405:
            message = "method not allowed on this route; see /openapi.json"
            headers["Allow"] = _allowed_methods(request)
        code = "payload_too_large" if exc.status_code == 413 else None  # as the body limit's own 413
        return error_response(exc.status_code, message, code=code, headers=headers or None)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        return database_unavailable_response(exc)

    @app.exception_handler(DataError)
    async def _db_data_error(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (PostgreSQL: NUL characters, numbers
        # out of range); the caller can fix that, so it is a 400, not a server error.
        log.info("database refused a value", extra={"error": str(exc.orig)[:200]})
        if "NUL" in str(exc.orig) or "\\u0000" in str(exc.orig):
            message = "text in the request may not contain NUL (\\u0000) characters"
        else:
            message = "a value in the request cannot be stored: it is out of range or not valid text"
        return error_response(400, message, code="invalid_value")

    @app.exception_handler(IntegrityError)
    async def _db_conflict(_: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced to create the same thing; the loser gets what a sequential one would.
        log.info("write lost a race on a unique key", extra={"error": str(exc.orig)[:200]})
        return error_response(
            409, "it already exists (created by a concurrent request); reload", code="conflict"
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return database_unavailable_response(exc)
        log.exception("database error", exc_info=exc)
        return error_response(500, "internal error while writing to the database", code="internal_error")

    # Registered by type, not in the catch-all below: Starlette re-raises what reaches that one
    # after answering, which resets the connection.
    @app.exception_handler(orjson.JSONEncodeError)
    @app.exception_handler(UnicodeEncodeError)
    @app.exception_handler(StatementError)
    async def _unencodable_value(_: Request, exc: Exception) -> JSONResponse:
        if _unencodable(exc):
            # A free-form JSON field (a schema, params, metadata) carried what JSON parsers accept but
            # no encoder writes back: the caller can fix it, so a 400 rather than a 500.
            log.info("request value cannot be encoded", extra={"error": str(exc)[:200]})
            return error_response(
                400,
                "a value in the request cannot be stored: integers must fit in 64 bits, and text may not "
                "hold unpaired surrogates (\\ud800-\\udfff)",
                code="invalid_value",
            )
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error; it has been logged", code="internal_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error; it has been logged", code="internal_error")

    # The web UI (fmops.web) answers its own paths with an HTML page instead of the JSON body.
    for exc_class, handler in list(app.exception_handlers.items()):
        app.exception_handlers[exc_class] = _with_error_page(handler)


ErrorPage = Callable[[Request, Response], Response]


def _with_error_page(handler: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapped(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        page: ErrorPage | None = getattr(request.app.state, "error_page", None)
        return page(request, response) if page is not None else response

    return wrapped
