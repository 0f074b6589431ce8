"""What the console reads of a project's traces, for comparing a database before and after a change
to how spans are stored (a migration, a partition moved): pages under filters, a trace, a search,
tag lists."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fmops.store import Store
from fmops.tracing.query import TraceFilters, TraceQuery


def trace_answers(store: Store, project_id: str, trace_id: str, now: datetime) -> list[Any]:
    query = TraceQuery(store)
    out: list[Any] = []
    for filters in (
        TraceFilters(),
        TraceFilters(model="m1"),
        TraceFilters(status="error"),
        TraceFilters(start=now - timedelta(days=3), end=now),
        TraceFilters(q="needle"),
        TraceFilters(tags=("red",)),
    ):
        page = query.search(project_id, filters, limit=20, include_io=True)
        out.append([(s.span_id, s.start_time, s.model, s.input) for s in page.spans])
    out.append([n.span.span_id for n in query.get_trace(project_id, trace_id)])
    out.append(query.tags_of(project_id, [s[0] for s in out[0]]))
    return out
