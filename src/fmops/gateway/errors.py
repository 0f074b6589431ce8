"""How the gateway turns a failed call into its answer and its span: provider errors mapped to the
error the caller gets, the trace id attached, the attempts recorded."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from fmops.errors import FmopsError, UserError
from fmops.gateway.routing import UpstreamFailed
from fmops.gateway.spans import CallRecord
from fmops.providers.base import ProviderError


def record_failure(record: CallRecord, exc: FmopsError | ProviderError) -> None:
    record.fail(exc.message)
    if isinstance(exc, UpstreamFailed) and exc.attempts:
        record.attributes["fmops.attempts"] = [a.__dict__ for a in exc.attempts]


def internal_error(exc: Exception) -> str:
    """The span's error for an exception the gateway did not expect."""
    if isinstance(exc, OperationalError):
        return "the metadata database is unavailable"
    return f"internal error: {type(exc).__name__}"


def traced(exc: Exception, record: CallRecord) -> FmopsError:
    """The error to answer with, carrying the trace id of the failed call's span."""
    error = as_fmops(exc)
    error.trace_id = record.trace_id
    return error


def as_fmops(exc: Exception) -> FmopsError:
    if isinstance(exc, FmopsError):
        return exc
    assert isinstance(exc, ProviderError)
    if exc.retryable:
        return UpstreamFailed(exc.message, 504 if exc.status == 504 else 502)
    if exc.status in (401, 403):
        # The upstream refused the credentials an engineer configured: a gateway fault, not the
        # caller's key (a 401 would tell the SDK user their fmops key is wrong).
        return UpstreamFailed(f"the upstream refused the model's configured credentials ({exc.message})", 502)
    param = exc.body.get("param") if isinstance(exc.body, dict) else None  # what the caller must change
    error = UserError(exc.message, param=param if isinstance(param, str) else None, code="upstream_rejected")
    error.status_code = exc.status if 400 <= exc.status < 500 else 400
    return error
