"""Spans and scores with known values, written straight to a store: for stats, alerts and retention."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from fmops.store import Store, new_id
from fmops.store.models import Score, Span

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a UTC midnight: day and hour buckets start here


def span(project_id: str, start: datetime, **columns: Any) -> dict[str, Any]:
    """A root span (a request) with neutral values; `parent_span_id=...` makes it a child."""
    row: dict[str, Any] = {
        "span_id": secrets.token_hex(8),
        "trace_id": secrets.token_hex(16),
        "parent_span_id": None,
        "project_id": project_id,
        "name": "chat",
        "kind": "llm",
        "start_time": start,
        "end_time": start + timedelta(milliseconds=columns.get("latency_ms") or 0),
        "status": "ok",
        "status_message": None,
        "model": None,
        "provider": None,
        "response_model": None,
        "key_id": None,
        "user": None,
        "session_id": None,
        "endpoint": None,
        "prompt_name": None,
        "prompt_version": None,
        "variant": None,
        "input_tokens": None,
        "output_tokens": None,
        "cost": None,
        "latency_ms": None,
        "ttft_ms": None,
        "cache_hit": False,
        "input": None,
        "output": None,
        "attributes": {},
    }
    row.update(columns)
    return row


def child(parent: dict[str, Any], **columns: Any) -> dict[str, Any]:
    """A span inside `parent`'s trace (a model call of an instrumented application)."""
    row = span(parent["project_id"], parent["start_time"], **columns)
    row.update(trace_id=parent["trace_id"], parent_span_id=parent["span_id"])
    return row


def score(
    root: dict[str, Any], kind: str, value: float | None, *, source: str, name: str | None = None
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "project_id": root["project_id"],
        "trace_id": root["trace_id"],
        "span_id": None,
        "name": name or kind,
        "kind": kind,
        "value": value,
        "label": None,
        "comment": "said something" if kind == "comment" else None,
        "corrected_output": None,
        "source": source,
        "author": "someone",
        "key_id": None,
        "created_at": root["start_time"] + timedelta(minutes=1),
    }


def insert_rows(store: Store, spans: Sequence[dict[str, Any]], scores: Sequence[dict[str, Any]] = ()) -> None:
    with store.session() as session:
        if spans:
            session.execute(insert(Span), list(spans))
        if scores:
            session.execute(insert(Score), list(scores))
