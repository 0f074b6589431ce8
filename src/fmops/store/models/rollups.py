"""Hourly roll-ups of the spans, so dashboards over days read a few rows per hour, not every span.

`stats_rollups` holds one row per (project, hour, model, provider, endpoint, prompt, variant): the
span dimensions a dashboard filters and groups by, except key and user (too many values). Counts
and sums add across rows; latency and TTFT percentiles come from log-scale histograms of the root
spans (see fmops.stats.rollup for the buckets). `stats_rollup_facets` (migration 0023) keeps the
same sums one dimension at a time: the whole project, each model, each user. `stats_rollup_hours`
says which hours are rolled up and whether spans arrived for them since (`dirty`): the trace
writer marks, the roll-up clears.

Scores arrive after their span: every score inserted through the ORM (feedback, online and judge
evaluators) marks the hour of its trace's root span dirty (`_mark_score_hour`, in the score's own
transaction), so the next round rolls that hour again with it.

`hour` is the hour's number since the Unix epoch (`floor(epoch seconds / 3600)`), the bucket number
of fmops.stats.buckets: an hour bucket is that number, a day bucket is `hour // 24`.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Float, Index, Integer, String, event, select
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from fmops.store import upsert
from fmops.store.models.base import Base
from fmops.store.models.feedback import Score
from fmops.store.models.traces import Span
from fmops.store.types import JSONType, UTCDateTime

# An integer key that autoincrements on both backends (SQLite only does so for INTEGER).
_ID = BigInteger().with_variant(Integer(), "sqlite")


class StatsRollup(Base):
    __tablename__ = "stats_rollups"
    __table_args__ = (Index("ix_stats_rollups_project_hour", "project_id", "hour"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(32))
    hour: Mapped[int] = mapped_column(Integer)
    model: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(50))
    endpoint: Mapped[str | None] = mapped_column(String(200))
    prompt_name: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[int | None] = mapped_column(Integer)
    variant: Mapped[str | None] = mapped_column(String(100))
    requests: Mapped[int] = mapped_column(Integer, default=0)  # root spans
    errors: Mapped[int] = mapped_column(Integer, default=0)  # root spans with status error
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)  # every span
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_count: Mapped[int] = mapped_column(Integer, default=0)  # root spans with a latency
    latency_hist: Mapped[Any] = mapped_column(JSONType)  # [[bucket, ...], [count, ...]]
    ttft_count: Mapped[int] = mapped_column(Integer, default=0)
    ttft_hist: Mapped[Any] = mapped_column(JSONType)
    # The scores of the root spans' traces (at roll-up time; a new score marks its hour dirty).
    feedback: Mapped[int] = mapped_column(Integer, default=0)  # requests with feedback (human, api)
    thumbs: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0)
    scores: Mapped[Any] = mapped_column(JSONType)  # {name: [sum, count]} of numeric scores


class StatsRollupFacet(Base):
    """The same sums per (project, hour, facet, value) (migration 0023), one dimension at a time:
    facet `all` (value NULL: the hour's whole project), `model` and `user`. A week's series reads
    168 rows instead of every (model, provider, endpoint, prompt, variant) row of its hours, a
    breakdown by model 20 an hour, and one by user (which `stats_rollups` does not keep) a row per
    user and hour instead of every span. Facet `user_day` holds the `user` rows of a whole UTC day
    summed, at the day's first hour, while all its 24 hours are rolled up and clean: a week by user
    reads those for its whole days (fmops.stats.rollup._write_user_day)."""

    __tablename__ = "stats_rollup_facets"
    __table_args__ = (Index("ix_stats_rollup_facets_project_facet_hour", "project_id", "facet", "hour"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(32))
    hour: Mapped[int] = mapped_column(Integer)
    facet: Mapped[str] = mapped_column(String(20))  # all, model, user; user_day (see below)
    value: Mapped[str | None] = mapped_column(String(200))  # the model or user; NULL for `all`
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_count: Mapped[int] = mapped_column(Integer, default=0)
    latency_hist: Mapped[Any] = mapped_column(JSONType)
    ttft_count: Mapped[int] = mapped_column(Integer, default=0)
    ttft_hist: Mapped[Any] = mapped_column(JSONType)
    feedback: Mapped[int] = mapped_column(Integer, default=0)
    thumbs: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0)
    scores: Mapped[Any] = mapped_column(JSONType)


class StatsRollupHour(Base):
    __tablename__ = "stats_rollup_hours"

    project_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never rolled up
    dirty: Mapped[bool] = mapped_column(Boolean, default=True)  # spans arrived since rolled_at


HOUR_SECONDS = 3600


@cache
def mark_hours(dialect: str) -> Any:
    """Mark hours dirty: insert, or set `dirty` on the hour already there (both backends)."""
    return upsert.insert(dialect, StatsRollupHour).on_conflict_do_update(
        index_elements=["project_id", "hour"], set_={"dirty": True}
    )


@event.listens_for(Score, "after_insert")
def _mark_score_hour(_mapper: Mapper[Score], connection: Connection, score: Score) -> None:
    """A new score changes the roll-up of its trace's root span's hour: mark that hour dirty."""
    # Found by the trace index (the project is checked here, not in SQL: given it, SQLite may
    # walk a (project, ...) index instead). No root yet: its hour is marked when it is stored.
    roots = connection.execute(
        select(Span.project_id, Span.start_time).where(
            Span.trace_id == score.trace_id, Span.parent_span_id.is_(None)
        )
    )
    hours = sorted(
        {int(start.timestamp()) // HOUR_SECONDS for project, start in roots if project == score.project_id}
    )
    if hours:
        rows = [{"project_id": score.project_id, "hour": h, "dirty": True, "rolled_at": None} for h in hours]
        connection.execute(mark_hours(connection.dialect.name), rows)
