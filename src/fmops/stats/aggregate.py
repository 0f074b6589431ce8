"""One GROUP BY over the filtered spans gives every number, for whatever grouping the caller asks.

Each span row is read once. Its trace's scores come along through a LEFT JOIN to a small subquery
that sums the scores of each trace first (so a span joins at most one row and no sum is counted
twice): feedback, thumbs, and one sum and count per score name the project uses. That subquery
reads only scores created since a day before the range starts: a score is written after the call
it judges, and the day allows for clients whose clocks run ahead.

Percentiles are exact on both backends. PostgreSQL computes them itself (`percentile_cont`, every
quantile of a column from one sort). SQLite has no percentile function, so each group's values come
back as one `group_concat` string, parsed and sorted in Python, and interpolated the way
`percentile_cont` does: one row per group instead of one per span keeps this cheap (see
benchmarks/stats_query.py for the figures on 1,000,000 spans).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Float,
    Select,
    SQLColumnExpression,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)

from fmops.stats.filters import StatsFilters
from fmops.stats.metrics import (
    FEEDBACK_SOURCES,
    LATENCY_QUANTILES,
    TTFT_QUANTILES,
    Metrics,
    ScoreStat,
    percentile,
)
from fmops.store import Store
from fmops.store.models import Score, Span

Key = tuple[Any, ...]
MAX_SCORE_NAMES = 100  # score names summarised per query (each is two columns)
SCORE_CLOCK_MARGIN = timedelta(days=1)
_ROOT = Span.parent_span_id.is_(None)
# A root span's value, NULL for its children: percentile_cont and group_concat both skip NULLs.
_ROOT_LATENCY = case((_ROOT, Span.latency_ms))
_ROOT_TTFT = case((_ROOT, Span.ttft_ms))


@dataclass
class Aggregate:
    groups: dict[Key, Metrics]
    total: Metrics


@dataclass
class _Values:
    """SQLite only: the raw latency and TTFT values of every group, for the total's percentiles."""

    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


def _parse(concatenated: str | None) -> list[float]:
    return sorted(map(float, concatenated.split(","))) if concatenated else []


def _quantiles(ordered: Sequence[float], quantiles: Sequence[float]) -> list[float | None]:
    return [percentile(ordered, q) for q in quantiles]


def _pg_percentiles(quantiles: Sequence[float], column: SQLColumnExpression[Any]) -> ColumnElement[Any]:
    """Every quantile of `column` from one sort: `percentile_cont(ARRAY[...]) WITHIN GROUP (ORDER BY ...)`."""
    from sqlalchemy.dialects.postgresql import array  # PostgreSQL's dialect: only on PostgreSQL

    return func.percentile_cont(array(list(quantiles)), type_=ARRAY(Float)).within_group(column)


def _pg_quantiles(values: Sequence[float | None] | None, size: int) -> list[float | None]:
    return list(values) if values is not None else [None] * size


def _int(value: Any) -> int:
    return int(value or 0)


def join_scores(query: Select[Any], scores: Subquery, names: list[str]) -> Select[Any]:
    """`query` over spans with the sums of `Aggregator._scores_by_trace` added as its last columns:
    feedback, thumbs, thumbs up, then a sum and a count per name."""
    score_sums = [scores.c.feedback, scores.c.thumbs, scores.c.thumbs_up]
    for n in range(len(names)):
        score_sums += [scores.c[f"sum_{n}"], scores.c[f"count_{n}"]]
    # Only a request (root span) carries its trace's scores: children join nothing.
    on = and_(_ROOT, scores.c.project_id == Span.project_id, scores.c.trace_id == Span.trace_id)
    return query.add_columns(*(func.sum(c) for c in score_sums)).outerjoin(scores, on)


class Aggregator:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.sqlite = store.dialect == "sqlite"

    def run(
        self, project_id: str | None, filters: StatsFilters, group: Sequence[ColumnElement[Any]] = ()
    ) -> Aggregate:
        """Metrics of each group (keyed by the group columns' values) and of all of them together."""
        where = filters.conditions(project_id)
        names = self._score_names(project_id, filters)
        scores = self._scores_by_trace(project_id, filters, names) if names else None
        groups, values = self._groups(self._query(where, group, scores, names), len(group), names)
        total = Metrics()
        for metrics in groups.values():
            total.add_counts(metrics)
        if self.sqlite:
            total.set_latency(_quantiles(sorted(values.latency), LATENCY_QUANTILES))
            total.set_ttft(_quantiles(sorted(values.ttft), TTFT_QUANTILES))
        elif not group:
            only = next(iter(groups.values()), Metrics())
            total.set_latency([only.latency_p50_ms, only.latency_p95_ms, only.latency_p99_ms])
            total.set_ttft([only.ttft_p50_ms, only.ttft_p95_ms])
        else:
            self._pg_total_percentiles(where, total)
        return Aggregate(groups=groups, total=total)

    def _score_names(self, project_id: str | None, filters: StatsFilters) -> list[str]:
        """Names of the scores recent enough to count (thumbs and comments among them), from an index."""
        query = (
            select(Score.name)
            .where(Score.created_at >= filters.start - SCORE_CLOCK_MARGIN)
            .distinct()
            .order_by(Score.name)
            .limit(MAX_SCORE_NAMES)
        )
        if project_id is not None:
            query = query.where(Score.project_id == project_id)
        with self.store.session() as session:
            return list(session.scalars(query))

    def _scores_by_trace(self, project_id: str | None, filters: StatsFilters, names: list[str]) -> Subquery:
        """One row per trace: got feedback (0/1), thumbs, thumbs up, and a sum and count per name."""
        thumbs = Score.kind == "thumbs"
        valued = and_(Score.kind != "thumbs", Score.value.is_not(None))
        per_name = []
        for n, name in enumerate(names):
            of_name = and_(valued, Score.name == name)
            per_name += [
                func.sum(case((of_name, Score.value))).label(f"sum_{n}"),
                func.count(case((of_name, Score.value))).label(f"count_{n}"),
            ]
        # Grouped by an expression, not the column: an index in (project, trace) order would let
        # SQLite skip the sort, and it would walk every score of the project for that. Sorting the
        # few recent ones, found by the (project, name, created_at) index, is far cheaper.
        # (Cast back to text: a column without text affinity could not be joined through an index.)
        trace = cast(func.coalesce(Score.trace_id, literal_column("''")), String)
        query = (
            select(
                Score.project_id,
                trace.label("trace_id"),
                func.max(case((Score.source.in_(FEEDBACK_SOURCES), 1), else_=0)).label("feedback"),
                func.sum(case((thumbs, 1), else_=0)).label("thumbs"),
                func.sum(case((and_(thumbs, Score.value > 0), 1), else_=0)).label("thumbs_up"),
                *per_name,
            )
            .where(Score.created_at >= filters.start - SCORE_CLOCK_MARGIN)
            .group_by(Score.project_id, trace)
        )
        if project_id is not None:
            query = query.where(Score.project_id == project_id)
        if len(names) < MAX_SCORE_NAMES:
            # Every name there is, so this keeps every score; with it, the index seeks straight to
            # each name's recent scores.
            query = query.where(Score.name.in_(names))
        return query.subquery("per_trace")

    def _percentile_columns(self) -> list[ColumnElement[Any]]:
        if self.sqlite:
            return [func.group_concat(_ROOT_LATENCY), func.group_concat(_ROOT_TTFT)]
        return [
            _pg_percentiles(LATENCY_QUANTILES, _ROOT_LATENCY),
            _pg_percentiles(TTFT_QUANTILES, _ROOT_TTFT),
        ]

    def _query(
        self,
        where: list[ColumnElement[bool]],
        group: Sequence[ColumnElement[Any]],
        scores: Subquery | None,
        names: list[str],
    ) -> Select[Any]:
        columns: list[ColumnElement[Any]] = [
            *group,
            func.sum(case((_ROOT, 1), else_=0)),
            func.sum(case((and_(_ROOT, Span.status == "error"), 1), else_=0)),
            func.sum(Span.input_tokens),
            func.sum(Span.output_tokens),
            func.coalesce(func.sum(Span.cost), literal(0.0)),
            *self._percentile_columns(),
        ]
        query = select(*columns).where(*where)
        if scores is not None:
            query = join_scores(query, scores, names)
        if group:
            query = query.group_by(*group)
        return query

    def _groups(self, query: Select[Any], width: int, names: list[str]) -> tuple[dict[Key, Metrics], _Values]:
        groups: dict[Key, Metrics] = {}
        values = _Values()
        with self.store.session() as session:
            rows = session.execute(query).all()
        for row in rows:
            volume, errors, tokens_in, tokens_out, cost, latency, ttft, *score_sums = row[width:]
            if volume is None:  # no span matched an ungrouped query: SUM over nothing is NULL
                continue
            metrics = Metrics(
                volume=int(volume),
                errors=int(errors),
                input_tokens=_int(tokens_in),
                output_tokens=_int(tokens_out),
                cost=float(cost),
            )
            if self.sqlite:
                latency_values, ttft_values = _parse(latency), _parse(ttft)
                metrics.set_latency(_quantiles(latency_values, LATENCY_QUANTILES))
                metrics.set_ttft(_quantiles(ttft_values, TTFT_QUANTILES))
                values.latency += latency_values
                values.ttft += ttft_values
            else:
                metrics.set_latency(_pg_quantiles(latency, len(LATENCY_QUANTILES)))
                metrics.set_ttft(_pg_quantiles(ttft, len(TTFT_QUANTILES)))
            if score_sums:
                feedback, thumbs, thumbs_up, *per_name = score_sums
                metrics.feedback_count, metrics.thumbs_count = _int(feedback), _int(thumbs)
                metrics.thumbs_up = _int(thumbs_up)
                for name, total, count in zip(names, per_name[::2], per_name[1::2], strict=True):
                    if count:
                        metrics.scores[name] = ScoreStat(mean=float(total) / int(count), count=int(count))
            groups[tuple(row[:width])] = metrics
        return groups, values

    def _pg_total_percentiles(self, where: list[ColumnElement[bool]], total: Metrics) -> None:
        query = select(
            _pg_percentiles(LATENCY_QUANTILES, Span.latency_ms),
            _pg_percentiles(TTFT_QUANTILES, Span.ttft_ms),
        ).where(*where, _ROOT)
        with self.store.session() as session:
            latency, ttft = session.execute(query).one()
        total.set_latency(_pg_quantiles(latency, len(LATENCY_QUANTILES)))
        total.set_ttft(_pg_quantiles(ttft, len(TTFT_QUANTILES)))
