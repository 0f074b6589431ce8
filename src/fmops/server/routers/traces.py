"""Traces of the caller's project: search spans with filters, read one trace as a span tree."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Path, Query

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import PrincipalDep, gate, text_query
from fmops.server.schemas.base import Page
from fmops.server.schemas.traces import SpanSummary, SpanTreeNode, TracePublic
from fmops.store.models import Span
from fmops.tracing.query import MAX_LIMIT, SpanNode, TraceFilters, TraceQuery

router = APIRouter(prefix="/api/traces", tags=["traces"], dependencies=gate(Role.engineer))


_SUMMARY_FIELDS = [name for name in SpanSummary.model_fields if name not in ("input", "output")]


def _summary(span: Span, include_io: bool) -> SpanSummary:
    # Reads only the loaded columns: input and output are not fetched unless asked for.
    fields = [*_SUMMARY_FIELDS, "input", "output"] if include_io else _SUMMARY_FIELDS
    return SpanSummary.model_validate({name: getattr(span, name) for name in fields})


def _node(node: SpanNode) -> SpanTreeNode:
    return SpanTreeNode.model_validate(
        {
            **_summary(node.span, include_io=True).model_dump(),
            "attributes": node.span.attributes or {},
            "children": [_node(c) for c in node.children],
        }
    )


@router.get("", response_model=Page[SpanSummary], summary="Search spans, newest first")
def search_traces(
    platform: PlatformDep,
    principal: PrincipalDep,
    start: datetime | None = Query(None, description="Spans that started at or after this time"),
    end: datetime | None = Query(None, description="Spans that started before this time"),
    model: str | None = text_query(),
    provider: str | None = text_query(),
    status: Literal["ok", "error"] | None = None,
    user: str | None = text_query(),
    session_id: str | None = text_query(),
    key_id: str | None = text_query(32),
    min_latency_ms: float | None = Query(None, ge=0),
    max_latency_ms: float | None = Query(None, ge=0),
    min_cost: float | None = Query(None, ge=0),
    max_cost: float | None = Query(None, ge=0),
    cache_hit: bool | None = None,
    endpoint: str | None = text_query(),
    prompt_name: str | None = text_query(),
    prompt_version: int | None = Query(None, ge=1, le=2**31 - 1),  # an INTEGER column
    variant: str | None = text_query(100),
    kind: str | None = text_query(20),
    root_only: bool = Query(False, description="Only spans without a parent: calls and apps' top steps"),
    feedback: Literal["any", "none", "positive", "negative"] | None = Query(
        None, description="Feedback from people on the trace: any, none, positive or negative thumbs"
    ),
    score_name: str | None = text_query(100, "Score to compare"),
    min_score: float | None = Query(None, allow_inf_nan=False, description="Lowest value of score_name"),
    max_score: float | None = Query(None, allow_inf_nan=False, description="Highest value of score_name"),
    q: str | None = text_query(500, "Text in the input or output"),
    include_io: bool = Query(False, description="Include each span's full input and output"),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(
        None,
        min_length=1,
        max_length=200,
        pattern="^[A-Za-z0-9_-]+$",
        description="next_cursor of the previous page",
    ),
) -> Page[SpanSummary]:
    filters = TraceFilters(
        start=start,
        end=end,
        model=model,
        provider=provider,
        status=status,
        user=user,
        session_id=session_id,
        key_id=key_id,
        min_latency_ms=min_latency_ms,
        max_latency_ms=max_latency_ms,
        min_cost=min_cost,
        max_cost=max_cost,
        cache_hit=cache_hit,
        endpoint=endpoint,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        variant=variant,
        kind=kind,
        root_only=root_only,
        feedback=feedback,
        score_name=score_name,
        min_score=min_score,
        max_score=max_score,
        q=q,
    )
    page = TraceQuery(platform.store).search(
        principal.project_id, filters, limit=limit, cursor=cursor, include_io=include_io
    )
    return Page[SpanSummary](data=[_summary(s, include_io) for s in page.spans], next_cursor=page.next_cursor)


@router.get("/{trace_id}", response_model=TracePublic, summary="A trace's spans as a tree")
def get_trace(
    platform: PlatformDep, principal: PrincipalDep, trace_id: str = Path(min_length=1, max_length=64)
) -> TracePublic:
    roots = TraceQuery(platform.store).get_trace(principal.project_id, trace_id)
    return TracePublic(trace_id=trace_id, spans=[_node(r) for r in roots])
