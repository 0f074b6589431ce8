"""What guardrail policies did over time, read from their decision spans (kind `guardrail`, children
of the call they judged; fmops.guardrails.engine writes them): blocks and flags per policy per
bucket for the dashboards, and the share of calls blocked in a window for alert rules.

These read the spans themselves, not the stats roll-ups: blocks and flags are few next to calls, and a
window's decisions are found through the (project, start_time) index.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import aliased

from fmops.stats.filters import StatsFilters
from fmops.store import Store
from fmops.store.models import Span
from fmops.tracing.query import GUARDRAIL_KIND, GUARDRAIL_OUTCOME

OUTCOMES = ("blocked", "flagged")
SERIES_LIMIT = 10  # the busiest policy/outcome pairs get a line; the rest are counted in `other`
_DIMENSIONS = ("model", "provider", "endpoint", "prompt_name", "prompt_version", "variant", "key_id", "user")
_PREFIX = GUARDRAIL_KIND + " "  # a decision span's name: "guardrail <policy label>"


def _outcome() -> Any:
    return Span.attributes[GUARDRAIL_OUTCOME].as_string()


def decision_series(
    store: Store, project_id: str, start: datetime, end: datetime, times: Sequence[int]
) -> dict[str, Any]:
    """Blocks and flags per policy in each bucket starting at `times` (epoch seconds, ascending, as
    the stats series' points): `{"series": [{policy, outcome, label, values, total}], "other": n}`."""
    query = (
        select(Span.name, _outcome(), Span.start_time)
        .where(
            Span.project_id == project_id,
            Span.start_time >= start,
            Span.start_time < end,
            Span.kind == GUARDRAIL_KIND,
            _outcome().in_(OUTCOMES),
        )
        .execution_options(yield_per=2000)
    )
    counts: dict[tuple[str, str], list[int]] = {}
    with store.session() as session:
        for name, outcome, started in session.execute(query):
            at = bisect_right(times, int(started.replace(tzinfo=started.tzinfo or UTC).timestamp())) - 1
            if at < 0:
                continue
            label = name.removeprefix(_PREFIX)
            counts.setdefault((label, outcome), [0] * len(times))[at] += 1
    ranked = sorted(counts.items(), key=lambda item: (-sum(item[1]), item[0]))
    series = [
        {
            "policy": policy,
            "outcome": outcome,
            "label": f"{policy} {outcome}",
            "values": values,
            "total": sum(values),
        }
        for (policy, outcome), values in ranked[:SERIES_LIMIT]
    ]
    return {"series": series, "other": sum(sum(values) for _, values in ranked[SERIES_LIMIT:])}


def blocked_calls(store: Store, project_id: str, filters: StatsFilters, policy: str | None = None) -> int:
    """Calls in the window (matching the filters' dimensions) that a policy blocked; `policy`: only
    those this policy (its label) blocked."""
    call = aliased(Span)
    query = (
        select(func.count(distinct(Span.parent_span_id)))
        .select_from(Span)
        .join(call, (call.project_id == Span.project_id) & (call.span_id == Span.parent_span_id))
        .where(
            Span.project_id == project_id,
            Span.start_time >= filters.start,
            Span.start_time < filters.end,
            Span.kind == GUARDRAIL_KIND,
            _outcome() == "blocked",
        )
    )
    if policy is not None:
        query = query.where(Span.name == _PREFIX + policy)
    for name in _DIMENSIONS:
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(call, name) == value)
    with store.session() as session:
        return int(session.scalar(query) or 0)
