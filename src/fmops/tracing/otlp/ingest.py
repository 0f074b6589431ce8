"""An OTLP/HTTP trace request, from raw body to span rows and the ExportTraceServiceResponse."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from fmops.tracing.otlp.decode import PROTOBUF, InvalidSpan, decode
from fmops.tracing.otlp.mapping import to_row

log = logging.getLogger(__name__)
MAX_PROBLEMS_LISTED = 5


@dataclass
class Ingested:
    rows: list[dict[str, Any]]
    rejected: int  # spans not stored
    message: str | None  # what was wrong, for partial_success (None: everything was fine)


def ingest(body: bytes, media: str, project_id: str, key_id: str | None) -> Ingested:
    """Span rows of the request's valid spans; bad spans are counted and described, not fatal."""
    decoded = decode(body, media)
    rows = []
    for span in decoded.spans:
        try:
            rows.append(to_row(span, project_id, key_id))
        except InvalidSpan as exc:
            decoded.reject(span.at, str(exc))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # A value the mapping did not expect: that span is refused, not the whole batch.
            log.warning("span not mapped", exc_info=exc)
            decoded.reject(span.at, f"span could not be mapped: {type(exc).__name__}: {str(exc)[:200]}")
    if not decoded.problems:
        return Ingested(rows, 0, None)
    problems = sorted(decoded.problems, key=lambda p: p.at)
    listed = "; ".join(p.describe() for p in problems[:MAX_PROBLEMS_LISTED])
    more = len(problems) - MAX_PROBLEMS_LISTED
    total = len(rows) + decoded.rejected
    # A broken group (whose spans could not be counted) makes a message even when none was rejected.
    head = (
        f"{decoded.rejected} of {total} spans rejected"
        if decoded.rejected
        else "some spans could not be read"
    )
    message = f"{head}: {listed}" + (f"; and {more} more" if more > 0 else "")
    return Ingested(rows, decoded.rejected, message)


def response_body(result: Ingested, media: str) -> bytes:
    """ExportTraceServiceResponse in the request's encoding; partial_success only when needed."""
    if media == PROTOBUF:
        response = ExportTraceServiceResponse()
        if result.message is not None:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        return response.SerializeToString()
    if result.message is None:
        return b"{}"
    # int64 as a decimal string, as protobuf's JSON mapping (and the OpenTelemetry collector) writes it.
    partial = {"rejectedSpans": str(result.rejected), "errorMessage": result.message}
    return orjson.dumps({"partialSuccess": partial})
