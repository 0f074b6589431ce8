"""`client.traces`: search spans and read traces (`GET /api/traces`, `GET /api/traces/{trace_id}`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from fmops.sdk.models import Score, SpanSummary, Trace, TracePage

if TYPE_CHECKING:
    from fmops.sdk.client import Client


class TraceFilters(TypedDict, total=False):
    """The filters of `GET /api/traces`; each one given narrows the search."""

    start: datetime  # started at or after
    end: datetime  # started before
    model: str
    provider: str
    status: Literal["ok", "error"]
    user: str
    session_id: str
    key_id: str
    min_latency_ms: float
    max_latency_ms: float
    min_cost: float
    max_cost: float
    cache_hit: bool
    endpoint: str
    prompt_name: str
    prompt_version: int
    variant: str
    kind: str
    root_only: bool  # only spans without a parent
    feedback: Literal["any", "none", "positive", "negative"]
    score_name: str
    min_score: float
    max_score: float
    blocked_by: str  # calls a guardrail policy blocked: its label (e.g. "model:small/deny"), or "*"
    flagged_by: str  # calls a guardrail policy flagged: its label, or "*"
    q: str  # text in the input or output
    tags: list[str]  # spans carrying every one of these tags
    include_io: bool  # include each span's input and output


class Traces:
    def __init__(self, client: Client) -> None:
        self._client = client

    def search(
        self, *, limit: int = 50, cursor: str | None = None, **filters: Unpack[TraceFilters]
    ) -> TracePage:
        """One page of spans, newest first; pass `cursor=page.next_cursor` for the next one."""
        params: dict[str, Any] = {**filters, "limit": limit, "cursor": cursor}
        if "tags" in filters:  # one comma-separated query parameter
            params["tags"] = ",".join(filters["tags"])
        return TracePage.model_validate(self._client.request("GET", "/api/traces", params=params))

    def iter(self, *, page_size: int = 100, **filters: Unpack[TraceFilters]) -> Iterator[SpanSummary]:
        """Every matching span, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = self.search(limit=page_size, cursor=cursor, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get(self, trace_id: str) -> Trace:
        """A trace's spans as a tree; NotFoundError when the project has no span of it."""
        return Trace.model_validate(self._client.request("GET", f"/api/traces/{trace_id}"))

    def feedback(self, trace_id: str) -> list[Score]:
        """The trace's scores and feedback, oldest first."""
        data = self._client.request("GET", f"/api/traces/{trace_id}/feedback")
        return [Score.model_validate(item) for item in data]
