"""Every error leaves the server in OpenAI's error shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from fmops.errors import FmopsError
from fmops.logs import redact

log = logging.getLogger(__name__)

_TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error"}


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
            "message": redact(message),
            "type": error_type
            or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
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
        parts.append(f"{label}: {msg}")
    return "; ".join(parts) or "invalid request", first


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FmopsError)
    async def _fmops(_: Request, exc: FmopsError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status_code == 503 else None
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(
            exc.status_code,
            exc.message,
            error_type=exc.error_type,
            param=exc.param,
            code=exc.code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        return error_response(400, message, param=param, code="invalid_request")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if message == "There was an error parsing the body":
            message = "request body could not be parsed: send UTF-8 encoded JSON"
        elif exc.status_code == 404 and message == "Not Found":
            message = "no such route; see /openapi.json for the API"
        elif exc.status_code == 405:
            message = "method not allowed on this route; see /openapi.json"
        return error_response(exc.status_code, message, headers=dict(exc.headers or {}) or None)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"error": str(exc.orig)[:200]})
        return error_response(
            503,
            "the metadata database is unavailable; retry shortly",
            code="database_unavailable",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _db_down(_, exc)  # type: ignore[arg-type]
        log.exception("database error", exc_info=exc)
        return error_response(500, "internal error while writing to the database", code="internal_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal server error; it has been logged", code="internal_error")
