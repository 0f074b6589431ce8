"""`/console/traces`: the traces explorer (filtered list with keyset paging) and one trace's detail.

The list's filters live in the URL, so a filtered view can be shared; HTMX swaps only the results
and the server tells it which clean URL to push (`HX-Push-Url`, without the empty fields).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from fmops.auth import Principal, Role
from fmops.endpoints.service import EndpointService
from fmops.errors import UserError
from fmops.feedback import FeedbackService
from fmops.feedback.schemas import parse_feedback
from fmops.platform import Platform
from fmops.prompts.service import PromptService
from fmops.tracing.query import TraceQuery
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.htmx import is_htmx
from fmops.web.pages import console_page
from fmops.web.routers import console_traces_view as view
from fmops.web.templating import render

router = APIRouter(prefix="/console/traces", include_in_schema=False, dependencies=web_gate(Role.engineer))
PAGE = console_page("/console/traces", "Traces", "Observe", role=Role.engineer, order=10)
TraceId = Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _list_data(platform: Platform, principal: Principal, query: view.ListQuery) -> dict[str, Any]:
    page = TraceQuery(platform.store).search(
        principal.project_id, query.filters, limit=query.limit, cursor=query.cursor
    )
    trace_ids = [s.trace_id for s in page.spans]
    return {
        "spans": page.spans,
        "feedback": view.feedback_by_trace(platform.store, principal.project_id, trace_ids),
        "older": query.url(cursor=page.next_cursor) if page.next_cursor else None,
    }


def _suggestions(platform: Platform, principal: Principal) -> dict[str, list[str]]:
    """Known models and endpoints for the filter inputs (from the catalog, not a scan of the spans)."""
    prompts = PromptService(platform.store, platform.catalog)
    endpoints = EndpointService(platform.store, platform.catalog, prompts).list(principal.project_id)
    return {
        "models": sorted(platform.catalog.models(principal.project_id)),
        "endpoints": [e.name for e in endpoints],
    }


@router.get("")
async def traces(request: Request, principal: WebPrincipal) -> Response:
    platform = _platform(request)
    query = view.read_query(request.query_params)
    data = await run_in_threadpool(_list_data, platform, principal, query)
    context = {**data, "query": query, "values": query.values, "newest": query.url(cursor=None)}
    context["money"] = view.money
    partial = is_htmx(request) and not request.headers.get("hx-history-restore-request")
    if partial:  # the filter form or the pager: only the results, and the URL to show
        response = render(request, "console/traces/results.html", context)
        response.headers["hx-push-url"] = query.url(cursor=query.cursor)
        return response
    context.update(await run_in_threadpool(_suggestions, platform, principal))
    context["ranges"] = list(view.RANGES)
    return render(request, "console/traces/list.html", context)


def _detail_data(platform: Platform, principal: Principal, trace_id: str) -> dict[str, Any]:
    query = TraceQuery(platform.store)
    roots = query.get_trace(principal.project_id, trace_id)
    tree = view.waterfall(roots)
    tags = query.tags_of(principal.project_id, [row.span.span_id for row in tree.rows])
    scores = FeedbackService(platform.store, platform.tracer).list_for_trace(principal.project_id, trace_id)
    return {"trace_id": trace_id, "tree": tree, "scores": scores, "tags": tags}


def _helpers() -> dict[str, Any]:
    return {
        "messages_of": view.messages,
        "pretty": view.pretty,
        "extra_input": view.extra_input,
        "money": view.money,
    }


@router.get("/{trace_id}")
async def trace_detail(request: Request, principal: WebPrincipal, trace_id: str = TraceId) -> Response:
    data = await run_in_threadpool(_detail_data, _platform(request), principal, trace_id)
    return render(request, "console/traces/detail.html", {**data, **_helpers()})


def feedback_body(
    kind: str, name: str, value: str, label: str, comment: str, span_id: str, trace_id: str
) -> dict[str, Any]:
    """The form's fields as a score body for FeedbackService (the API's schema checks the rest)."""
    body: dict[str, Any] = {"trace_id": trace_id}
    if span_id:
        body["span_id"] = span_id
    if name:
        body["name"] = name
    if comment:
        body["comment"] = comment
    if kind in ("up", "down"):
        body.update(kind="thumbs", value=1 if kind == "up" else -1)
    elif kind == "number":
        try:
            body.update(kind="number", value=float(value))
        except ValueError:
            raise UserError("a number score needs a numeric value", param="value") from None
    elif kind == "label":
        body.update(kind="label", label=label)
    elif kind == "correction":
        body.pop("comment", None)
        body.update(kind="correction", corrected_output=comment)
    elif kind == "comment":
        body.update(kind="comment")
    else:
        raise UserError(f"unknown feedback kind {kind!r}", param="kind")
    return body


@router.post("/{trace_id}/feedback")
async def add_feedback(
    request: Request,
    principal: WebPrincipal,
    kind: Annotated[str, Form(max_length=20)],
    name: Annotated[str, Form(max_length=100)] = "",
    value: Annotated[str, Form(max_length=40)] = "",
    label: Annotated[str, Form(max_length=200)] = "",
    comment: Annotated[str, Form(max_length=20_000)] = "",
    span_id: Annotated[str, Form(max_length=32)] = "",
    trace_id: str = TraceId,
) -> Response:
    platform = _platform(request)
    raw = feedback_body(kind, name.strip(), value.strip(), label.strip(), comment.strip(), span_id, trace_id)
    try:
        body = parse_feedback(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "feedback"
        raise UserError(f"{where}: {first['msg']}", param=where) from None
    service = FeedbackService(platform.store, platform.tracer)
    await run_in_threadpool(service.record, principal, body)
    scores = await run_in_threadpool(service.list_for_trace, principal.project_id, trace_id)
    context = {"trace_id": trace_id, "scores": scores, "message": "feedback recorded", "pretty": view.pretty}
    return render(request, "console/traces/feedback.html", context)
