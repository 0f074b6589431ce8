"""`/console/dashboards`: charts of the project's traffic, quality and cost over time.

The page itself runs no query: it paints the frame, the controls and empty charts at once, and
`charts.js` then fetches `/console/dashboards/data`, so a slow 30-day aggregation never delays the
first paint. The numbers come from `StatsService`, as the REST routes' do.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.stats import Dimension, Metrics, StatsFilters, StatsService
from fmops.stats.guardrails import decision_series
from fmops.store import utcnow
from fmops.web.deps import WebPrincipal, web_gate
from fmops.web.pages import console_page
from fmops.web.templating import render

PAGE = console_page("/console/dashboards", "Dashboards", "Observe", role=Role.engineer, order=20)
router = APIRouter(prefix=PAGE.path, include_in_schema=False, dependencies=web_gate(Role.engineer))

RangeKey = Literal["1h", "24h", "7d", "30d"]
GroupKey = Literal["", "model", "endpoint", "prompt", "variant"]  # what the page offers
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
GROUPS = {"model": "Model", "endpoint": "Endpoint", "prompt": "Prompt version", "variant": "Variant"}
# Per-group series are one stats query each: the busiest few groups get one.
SERIES_GROUPS = 5
TABLE_ROWS = 50
# Metrics sent per point: the counters and percentiles, and the rates derived from them.
FIELDS = (
    "volume",
    "errors",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "feedback_count",
    "thumbs_count",
    "thumbs_up",
)
RATES = ("error_rate", "feedback_rate", "feedback_positive_share")


def metrics_json(metrics: Metrics) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(metrics, name) for name in FIELDS + RATES}
    values["scores"] = {name: stat.mean for name, stat in metrics.scores.items()}
    return values


def group_label(group: dict[str, str | int | None]) -> str:
    if "prompt_name" in group:
        name, version = group["prompt_name"], group["prompt_version"]
        return "(none)" if name is None else f"{name} v{version}" if version is not None else str(name)
    value = next(iter(group.values()), None)
    return "(none)" if value is None else str(value)


def narrowed(filters: StatsFilters, group: dict[str, str | int | None]) -> StatsFilters:
    """The filters of one breakdown group: its columns are the filters' fields of the same names."""
    fields: dict[str, Any] = dict(group)
    return dataclasses.replace(filters, **fields)


def _series(stats: StatsService, project_id: str, filters: StatsFilters) -> dict[str, Any]:
    series = stats.timeseries(project_id, filters)
    columns: dict[str, list[Any]] = {name: [] for name in FIELDS + RATES}
    names = sorted({name for point in series.points for name in point.metrics.scores})
    scores: dict[str, list[float | None]] = {name: [] for name in names}
    for point in series.points:
        for name in FIELDS + RATES:
            columns[name].append(getattr(point.metrics, name))
        for name in names:
            stat = point.metrics.scores.get(name)
            scores[name].append(None if stat is None else stat.mean)
    return {
        "bucket": series.bucket.value,
        "bucket_seconds": series.bucket.seconds,
        "times": [int(point.time.timestamp()) for point in series.points],
        "columns": columns,
        "scores": scores,
        "total": metrics_json(series.total),
        "approximate": series.approximate,  # stats roll-ups: percentile charts show "≈"
    }


def range_filters(span: RangeKey) -> StatsFilters:
    end = utcnow()
    return StatsFilters(start=end - RANGES[span], end=end)


async def series_data(stats: StatsService, project_id: str, span: RangeKey) -> dict[str, Any]:
    """Every chart's points over the range, and its totals."""
    filters = range_filters(span)
    body = await run_in_threadpool(_series, stats, project_id, filters)
    # Blocks and flags per guardrail policy, in the same buckets as every other chart.
    body["guardrails"] = await run_in_threadpool(
        decision_series, stats.store, project_id, filters.start, filters.end, body["times"]
    )
    return body | {"range": span, "start": filters.start.isoformat(), "end": filters.end.isoformat()}


async def group_data(stats: StatsService, project_id: str, span: RangeKey, by: Dimension) -> dict[str, Any]:
    """The breakdown table, and the series of the busiest groups."""
    filters = range_filters(span)
    breakdown = await run_in_threadpool(stats.breakdown, project_id, filters, by, limit=TABLE_ROWS)
    rows = [{"label": group_label(r.group), **metrics_json(r.metrics)} for r in breakdown.rows]
    # A group's series is the time series filtered to it; the null group cannot be filtered to.
    busiest = [r.group for r in breakdown.rows if r.metrics.volume and None not in r.group.values()]
    busiest = busiest[:SERIES_GROUPS]
    found = await asyncio.gather(
        *(run_in_threadpool(stats.timeseries, project_id, narrowed(filters, group)) for group in busiest)
    )
    return {
        "range": span,
        "by": by.value,
        "count": breakdown.groups,
        "rows": rows,
        "times": [int(point.time.timestamp()) for point in found[0].points] if found else [],
        "series": [
            {
                "label": group_label(group),
                "volume": [p.metrics.volume for p in series.points],
                "latency_p95_ms": [p.metrics.latency_p95_ms for p in series.points],
            }
            for group, series in zip(busiest, found, strict=True)
        ],
    }


@router.get("")
async def dashboards(request: Request, range: RangeKey = Query("24h"), by: GroupKey = Query("")) -> Response:
    context = {"range": range, "by": by, "ranges": list(RANGES), "groups": GROUPS}
    return render(request, "console/dashboards/index.html", context)


# Two routes, fetched side by side: the charts draw as soon as the series are in, while the
# breakdown (a second pass over the range, and one per busiest group) is still being counted.
@router.get("/data")
async def data(platform: PlatformDep, principal: WebPrincipal, range: RangeKey = Query("24h")) -> Response:
    body = await series_data(StatsService(platform.store), principal.project_id, range)
    return JSONResponse(body, headers={"cache-control": "no-store"})


@router.get("/groups")
async def groups(
    platform: PlatformDep, principal: WebPrincipal, by: Dimension, range: RangeKey = Query("24h")
) -> Response:
    body = await group_data(StatsService(platform.store), principal.project_id, range, by)
    return JSONResponse(body, headers={"cache-control": "no-store"})
