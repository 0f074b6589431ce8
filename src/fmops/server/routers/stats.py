"""Dashboard data of the caller's project: metrics over time, and broken down by a dimension."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from fmops.auth import Role
from fmops.platform import PlatformDep
from fmops.server.deps import IsoDateTime, PrincipalDep, gate, text_query
from fmops.server.schemas.stats import (
    BreakdownPublic,
    BreakdownRowPublic,
    MetricsPublic,
    PointPublic,
    TimeSeriesPublic,
)
from fmops.stats import Bucket, Dimension, StatsFilters, StatsService
from fmops.stats.service import MAX_BREAKDOWN_ROWS
from fmops.store import utcnow

router = APIRouter(prefix="/api/stats", tags=["stats"], dependencies=gate(Role.engineer))


def stats_filters(
    start: IsoDateTime | None = Query(
        None, description="Spans that started at or after this time; default end - 24 h"
    ),
    end: IsoDateTime | None = Query(None, description="Spans that started before this time; default now"),
    model: str | None = text_query(),
    provider: str | None = text_query(),
    endpoint: str | None = text_query(),
    prompt_name: str | None = text_query(),
    prompt_version: int | None = Query(None, ge=1, le=2**31 - 1),  # an INTEGER column
    variant: str | None = text_query(),
    key_id: str | None = text_query(32),
    user: str | None = text_query(),
) -> StatsFilters:
    return StatsFilters.around(
        start=start,
        end=end,
        now=utcnow(),
        model=model,
        provider=provider,
        endpoint=endpoint,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        variant=variant,
        key_id=key_id,
        user=user,
    )


FiltersDep = Annotated[StatsFilters, Depends(stats_filters)]


@router.get("/timeseries", response_model=TimeSeriesPublic, summary="Metrics per time bucket")
def timeseries(
    platform: PlatformDep,
    principal: PrincipalDep,
    filters: FiltersDep,
    bucket: Bucket | None = Query(None, description="minute, hour or day; default: chosen from the range"),
) -> TimeSeriesPublic:
    series = StatsService(platform.store).timeseries(principal.project_id, filters, bucket)
    return TimeSeriesPublic(
        bucket=series.bucket,
        bucket_seconds=series.bucket.seconds,
        start=filters.start,
        end=filters.end,
        points=[PointPublic.of(p.metrics, time=p.time) for p in series.points],
        total=MetricsPublic.of(series.total),
        percentiles="approximate" if series.approximate else "exact",
    )


@router.get("/breakdown", response_model=BreakdownPublic, summary="Metrics per model, endpoint, prompt, ...")
def breakdown(
    platform: PlatformDep,
    principal: PrincipalDep,
    filters: FiltersDep,
    by: Dimension = Query(..., description="What to group by"),
    limit: int = Query(50, ge=1, le=MAX_BREAKDOWN_ROWS, description="Most rows, the busiest first"),
) -> BreakdownPublic:
    result = StatsService(platform.store).breakdown(principal.project_id, filters, by, limit=limit)
    return BreakdownPublic(
        by=by,
        start=filters.start,
        end=filters.end,
        groups=result.groups,
        rows=[BreakdownRowPublic.of(r.metrics, group=r.group) for r in result.rows],
        total=MetricsPublic.of(result.total),
        percentiles="approximate" if result.approximate else "exact",
    )
