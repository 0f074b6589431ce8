"""Traces of the caller's project: search spans with filters, read one trace as a span tree."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import IsoDateTime, PrincipalDep, gate, text_query
from fmops.server.schemas.base import Page
from fmops.server.schemas.traces import SpanSummary, SpanTreeNode, TracePublic
from fmops.store.models import Span
from fmops.tracing.query import MAX_LIMIT, SpanNode, TraceFilters, TraceQuery
from fmops.tracing.tags import MAX_FILTER_TAGS, MAX_TAG_LENGTH, TAG_PATTERN, parse_tags

router = APIRouter(prefix="/api/traces", tags=["traces"], dependencies=gate(Role.engineer))


_SUMMARY_FIELDS = [name for name in SpanSummary.model_fields if name not in ("input", "output", "tags")]
# The tag rule in the schema itself, so a client knows it before asking: up to 10 tags, comma-separated.
_ONE_TAG = TAG_PATTERN[1:-1]
TagsQuery = Query(
    None,
    pattern=f"^{_ONE_TAG}(,{_ONE_TAG}){{0,{MAX_FILTER_TAGS - 1}}}$",
    max_length=MAX_FILTER_TAGS * (MAX_TAG_LENGTH + 1),
    description="Comma-separated tags: spans carrying all of them",
)


def _summary(span: Span, include_io: bool, tags: dict[str, list[str]]) -> SpanSummary:
    # Reads only the loaded columns: input and output are not fetched unless asked for.
    fields = [*_SUMMARY_FIELDS, "input", "output"] if include_io else _SUMMARY_FIELDS
    values = {name: getattr(span, name) for name in fields}
    return SpanSummary.model_validate({**values, "tags": tags.get(span.span_id, [])})


def _node(node: SpanNode, tags: dict[str, list[str]]) -> SpanTreeNode:
    return SpanTreeNode.model_validate(
        {
            **_summary(node.span, True, tags).model_dump(),
            "attributes": node.span.attributes or {},
            "children": [_node(c, tags) for c in node.children],
        }
    )


def _span_ids(nodes: list[SpanNode]) -> list[str]:
    return [i for n in nodes for i in (n.span.span_id, *_span_ids(n.children))]


@router.get("", response_model=Page[SpanSummary], summary="Search spans, newest first")
def search_traces(
    platform: PlatformDep,
    principal: PrincipalDep,
    start: IsoDateTime | None = Query(None, description="Spans that started at or after this time"),
    end: IsoDateTime | None = Query(None, description="Spans that started before this time"),
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
    tags: str | None = TagsQuery,
    blocked_by: str | None = text_query(300, "Calls blocked by this guardrail policy (its label; * for any)"),
    flagged_by: str | None = text_query(300, "Calls flagged by this guardrail policy (its label; * for any)"),
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
        tags=parse_tags(tags or "", limit=MAX_FILTER_TAGS),
        blocked_by=blocked_by,
        flagged_by=flagged_by,
    )
    query = TraceQuery(platform.store)
    page = query.search(principal.project_id, filters, limit=limit, cursor=cursor, include_io=include_io)
    shown = query.tags_of(principal.project_id, [s.span_id for s in page.spans])
    return Page[SpanSummary](
        data=[_summary(s, include_io, shown) for s in page.spans], next_cursor=page.next_cursor
    )


@router.get("/{trace_id}", response_model=TracePublic, summary="A trace's spans as a tree")
def get_trace(
    platform: PlatformDep, principal: PrincipalDep, trace_id: str = Path(min_length=1, max_length=64)
) -> TracePublic:
    query = TraceQuery(platform.store)
    roots = query.get_trace(principal.project_id, trace_id)
    tags = query.tags_of(principal.project_id, _span_ids(roots))
    return TracePublic(trace_id=trace_id, spans=[_node(r, tags) for r in roots])
