"""A/B experiments on an endpoint: each variant's results with confidence intervals, and promotion.

The unit is a call: a span with `endpoint = name` made since the experiment started (the moment
the current set of variants began serving). The gateway writes exactly one such span per call,
whether the call starts a trace or joins an application's (a traceparent from the SDK), and a
call's feedback and scores are those of its trace. For each variant the report gives

- volume, and the error rate (Wilson 95% interval);
- latency: mean (Student-t interval), p50 and p95, over successful calls;
- cost per successful call (mean, t interval);
- positive-feedback rate: among calls with thumbs from a person or an application, the share whose
  thumbs add up to more than zero (Wilson interval);
- the mean of every evaluator score (t interval), a call's several scores of one name averaged first.

Every variant is compared with the control (the first variant) on every metric: a two-proportion
z-test for rates and Welch's t-test for means, with Holm's correction over all the comparisons, so
that looking at many metrics does not produce a winner by chance.

Counts, sums and sums of squares are computed in SQL, one GROUP BY per kind of metric; the
percentiles come from one window query that returns only the rows either side of each quantile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Integer, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from fmops.endpoints.schemas import EndpointUpdate
from fmops.errors import Conflict, NotFound, UserError
from fmops.stats.inference import (
    Interval,
    holm,
    mean_interval,
    n_for_means,
    n_for_proportions,
    two_proportion_p,
    welch_p,
    wilson,
)
from fmops.stats.metrics import FEEDBACK_SOURCES
from fmops.store import Store
from fmops.store.models import Endpoint, Score, Span

if TYPE_CHECKING:
    from fmops.endpoints.service import EndpointService, EndpointView

ALPHA = 0.05
DETECTABLE_RATE_DIFFERENCE = 0.05  # "a 5-point difference" in the verdict
DETECTABLE_EFFECT_SIZE = 0.2  # for scores on unknown scales: a small effect (Cohen's d)
MAX_SCORE_NAMES = 50
QUANTILES = ((50, "latency_p50_ms"), (95, "latency_p95_ms"))  # percent, field

# What a metric is called in a sentence, and whether more of it is better.
_RATE_METRICS = {"error_rate": ("error rate", False), "positive_feedback": ("positive-feedback rate", True)}
_MEAN_METRICS = {"latency_ms": ("mean latency", False), "cost": ("cost per call", False)}


@dataclass(frozen=True)
class Rate:
    successes: int
    n: int
    value: float | None
    interval: Interval | None

    @classmethod
    def of(cls, successes: int, n: int) -> Rate:
        return cls(successes, n, successes / n if n else None, wilson(successes, n))


@dataclass(frozen=True)
class Mean:
    n: int
    value: float | None
    sd: float | None
    interval: Interval | None

    @classmethod
    def of(cls, n: int, total: float, squares: float, *, positive: bool = False) -> Mean:
        """From SQL sums; `positive` clips the interval at 0 (a latency or a cost is never below)."""
        if n == 0:
            return cls(0, None, None, None)
        mean = total / n
        # From sums: cancellation stays negligible unless the spread is ~1e-8 of the mean.
        variance = max(squares - total * total / n, 0.0) / (n - 1) if n > 1 else 0.0
        interval = mean_interval(mean, variance, n)
        if positive and interval is not None:
            interval = Interval(max(interval.low, 0.0), interval.high)
        return cls(n, mean, math.sqrt(variance) if n > 1 else None, interval)

    @property
    def variance(self) -> float:
        return (self.sd or 0.0) ** 2


@dataclass
class VariantResult:
    name: str
    weight: float
    calls: int = 0
    error_rate: Rate = field(default_factory=lambda: Rate.of(0, 0))
    latency_ms: Mean = field(default_factory=lambda: Mean.of(0, 0.0, 0.0))
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cost: Mean = field(default_factory=lambda: Mean.of(0, 0.0, 0.0))
    positive_feedback: Rate = field(default_factory=lambda: Rate.of(0, 0))
    scores: dict[str, Mean] = field(default_factory=dict)

    def metric(self, key: str) -> Rate | Mean | None:
        if key.startswith("score:"):
            return self.scores.get(key.removeprefix("score:"))
        found: Rate | Mean = getattr(self, key)
        return found


@dataclass(frozen=True)
class Comparison:
    """One variant against the control on one metric."""

    variant: str
    metric: str  # error_rate, latency_ms, cost, positive_feedback, score:<name>
    control_value: float | None
    value: float | None
    p_value: float | None  # the test's own p-value
    p_adjusted: float | None  # after Holm's correction over every comparison of the report
    significant: bool
    better: bool | None  # None when not significant


@dataclass
class ExperimentReport:
    endpoint: str
    started_at: datetime
    control: str
    variants: list[VariantResult]
    comparisons: list[Comparison]
    primary_metric: str  # what decides the winner: feedback, else the first score, else errors
    winner: str | None
    calls_needed: int | None  # more calls per variant to detect a small difference (when no winner)
    verdict: str


# --- reading the calls -----------------------------------------------------------------------


def _calls(project_id: str, endpoint: str, started: datetime) -> list[ColumnElement[bool]]:
    # The gateway's span of each call, root or not: an application traced with the SDK sends a
    # traceparent, which makes its calls children of its own spans. (Index: project, endpoint, start.)
    return [Span.project_id == project_id, Span.endpoint == endpoint, Span.start_time >= started]


def _ok(column: Any) -> Any:
    return case((Span.status != "error", column))


def _volumes(session: Session, where: list[ColumnElement[bool]], results: dict[str, VariantResult]) -> None:
    latency, cost = _ok(Span.latency_ms), _ok(Span.cost)
    query = (
        select(
            Span.variant,
            func.count(),
            func.sum(case((Span.status == "error", 1), else_=0)),
            func.count(latency),
            func.sum(latency),
            func.sum(latency * latency),
            func.count(cost),
            func.sum(cost),
            func.sum(cost * cost),
        )
        .where(*where)
        .group_by(Span.variant)
    )
    for variant, calls, errors, n_lat, s_lat, q_lat, n_cost, s_cost, q_cost in session.execute(query):
        result = results.get(variant)
        if result is None:  # a variant the endpoint no longer has
            continue
        result.calls = int(calls)
        result.error_rate = Rate.of(int(errors or 0), int(calls))
        result.latency_ms = Mean.of(int(n_lat), float(s_lat or 0), float(q_lat or 0), positive=True)
        result.cost = Mean.of(int(n_cost), float(s_cost or 0), float(q_cost or 0), positive=True)


def _percentiles(
    session: Session, where: list[ColumnElement[bool]], results: dict[str, VariantResult]
) -> None:
    """p50/p95 interpolated like percentile_cont, from the two ranked rows around each quantile."""
    ranked = (
        select(
            Span.variant.label("variant"),
            Span.latency_ms.label("value"),
            (func.row_number().over(partition_by=Span.variant, order_by=Span.latency_ms) - 1).label("rank"),
            func.count().over(partition_by=Span.variant).label("n"),
        )
        .where(*where, Span.status != "error", Span.latency_ms.is_not(None))
        .subquery()
    )
    wanted = []
    for percent, _ in QUANTILES:
        # Integer arithmetic: the same floor on both backends (a cast rounds on PostgreSQL).
        below = cast(ranked.c.n - 1, Integer) * literal(percent) // literal(100)
        wanted += [ranked.c.rank == below, ranked.c.rank == below + 1]
    query = select(ranked.c.variant, ranked.c.rank, ranked.c.n, ranked.c.value).where(or_(*wanted))
    rows: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    for variant, rank, n, value in session.execute(query):
        rows.setdefault(variant, {})[int(rank)] = float(value)
        sizes[variant] = int(n)
    for variant, values in rows.items():
        result = results.get(variant)
        if result is None:
            continue
        n = sizes[variant]
        for percent, name in QUANTILES:
            position = (n - 1) * percent / 100
            low = (n - 1) * percent // 100
            high = min(low + 1, n - 1)
            setattr(result, name, values[low] + (values[high] - values[low]) * (position - low))


def _scored(project_id: str, where: list[ColumnElement[bool]]) -> list[Any]:
    """Calls joined to their trace's scores, found per call through the (project, trace) index.

    No condition on the scores' time: a score of a call made during the experiment counts
    whenever it came (and a time range would tempt the planner into the (project, name,
    created_at) index, scanning every recent score of the project once per call).
    """
    return [*where, Score.project_id == project_id, Score.trace_id == Span.trace_id, Score.value.is_not(None)]


def _feedback(
    session: Session, project_id: str, where: list[ColumnElement[bool]], results: dict[str, VariantResult]
) -> None:
    # One plain join, then two levels of grouping: each call's net thumbs, then each variant's
    # calls. (A grouped subquery of scores joined back to the calls can be planned as a nested
    # loop that regroups the scores for every call.)
    per_call = (
        select(Span.variant.label("variant"), func.sum(Score.value).label("net"))
        .where(*_scored(project_id, where), Score.kind == "thumbs", Score.source.in_(FEEDBACK_SOURCES))
        .group_by(Span.variant, Span.span_id)
        .subquery()
    )
    query = select(
        per_call.c.variant, func.count(), func.sum(case((per_call.c.net > 0, 1), else_=0))
    ).group_by(per_call.c.variant)
    for variant, rated, positive in session.execute(query):
        if variant in results:
            results[variant].positive_feedback = Rate.of(int(positive or 0), int(rated))


def _scores(
    session: Session, project_id: str, where: list[ColumnElement[bool]], results: dict[str, VariantResult]
) -> None:
    per_call = (
        select(
            Span.variant.label("variant"),
            Score.name.label("name"),
            func.avg(Score.value).label("value"),
        )
        .where(*_scored(project_id, where), Score.source == "evaluator", Score.kind != "thumbs")
        .group_by(Span.variant, Span.span_id, Score.name)
        .subquery()
    )
    value = per_call.c.value
    query = (
        select(per_call.c.variant, per_call.c.name, func.count(), func.sum(value), func.sum(value * value))
        .group_by(per_call.c.variant, per_call.c.name)
        .order_by(per_call.c.name)
    )
    names: set[str] = set()
    for variant, name, n, total, squares in session.execute(query):
        if variant not in results or (name not in names and len(names) >= MAX_SCORE_NAMES):
            continue
        names.add(name)
        results[variant].scores[name] = Mean.of(int(n), float(total or 0), float(squares or 0))


# --- comparing -------------------------------------------------------------------------------


def _metrics(variants: Sequence[VariantResult]) -> list[str]:
    names = sorted({name for v in variants for name in v.scores})
    return ["error_rate", "latency_ms", "cost", "positive_feedback", *(f"score:{n}" for n in names)]


def _describe(metric: str) -> tuple[str, bool]:
    """(words for the metric, whether higher is better)."""
    if metric.startswith("score:"):
        return f"mean {metric.removeprefix('score:')} score", True
    return (_RATE_METRICS | _MEAN_METRICS)[metric]


def _p_value(control: Rate | Mean | None, other: Rate | Mean | None) -> float | None:
    if isinstance(control, Rate) and isinstance(other, Rate):
        return two_proportion_p(control.successes, control.n, other.successes, other.n)
    if isinstance(control, Mean) and isinstance(other, Mean):
        if control.value is None or other.value is None:
            return None
        return welch_p(control.value, control.variance, control.n, other.value, other.variance, other.n)
    return None


def _compare(variants: Sequence[VariantResult]) -> list[Comparison]:
    control, others = variants[0], variants[1:]
    pending: list[tuple[str, str, Rate | Mean | None, Rate | Mean | None, float | None]] = []
    for metric in _metrics(variants):
        for other in others:
            mine, theirs = control.metric(metric), other.metric(metric)
            pending.append((other.name, metric, mine, theirs, _p_value(mine, theirs)))
    tested = [p for *_, p in pending if p is not None]
    adjusted = iter(holm(tested))
    comparisons = []
    for variant, metric, mine, theirs, p in pending:
        p_adjusted = next(adjusted) if p is not None else None
        control_value = mine.value if mine is not None else None
        value = theirs.value if theirs is not None else None
        significant = p_adjusted is not None and p_adjusted < ALPHA and control_value != value
        better = None
        if significant and control_value is not None and value is not None:
            better = (value > control_value) == _describe(metric)[1]
        comparisons.append(
            Comparison(variant, metric, control_value, value, p, p_adjusted, significant, better)
        )
    return comparisons


def _primary(variants: Sequence[VariantResult]) -> str:
    if any(v.positive_feedback.n for v in variants):
        return "positive_feedback"
    names = sorted({name for v in variants for name in v.scores})
    return f"score:{names[0]}" if names else "error_rate"


def _winner(control: str, comparisons: Sequence[Comparison], primary: str) -> str | None:
    """The variant that beats the control on the primary metric (the best one if several do); the
    control when every other variant is significantly worse; otherwise nobody yet."""
    on_primary = [c for c in comparisons if c.metric == primary]
    better = [c for c in on_primary if c.better]
    if better:
        higher = _describe(primary)[1]
        best = max(better, key=lambda c: (c.value or 0.0) if higher else -(c.value or 0.0))
        return best.variant
    if on_primary and all(c.better is False for c in on_primary):
        return control
    return None


def _calls_needed(variants: Sequence[VariantResult], primary: str) -> int:
    """More calls per variant before a 5-point (or small-effect) difference would be detected."""
    if primary.startswith("score:"):
        name = primary.removeprefix("score:")
        needed = n_for_means(DETECTABLE_EFFECT_SIZE)
        have = [v.scores[name].n if name in v.scores else 0 for v in variants]
        shares = [
            (v.scores[name].n if name in v.scores else 0) / v.calls if v.calls else 1.0 for v in variants
        ]
    else:
        rates = [v.positive_feedback if primary == "positive_feedback" else v.error_rate for v in variants]
        observed = sum(r.successes for r in rates) / max(sum(r.n for r in rates), 1)
        base = observed if any(r.n for r in rates) else 0.5
        target = base + DETECTABLE_RATE_DIFFERENCE
        if target > 1.0:
            target = base - DETECTABLE_RATE_DIFFERENCE
        needed = n_for_proportions(base, target)
        have = [r.n for r in rates]
        # Feedback comes on a share of calls only: scale what is missing by that share.
        shares = [r.n / v.calls if v.calls else 1.0 for r, v in zip(rates, variants, strict=True)]
    missing = [
        math.ceil(max(needed - n, 0) / share) if share > 0 else needed
        for n, share in zip(have, shares, strict=True)
    ]
    return max(missing)


def _sentence(c: Comparison, control: str) -> str:
    words, _ = _describe(c.metric)
    direction = "higher" if (c.value or 0.0) > (c.control_value or 0.0) else "lower"
    return f"{c.variant} has a {direction} {words} than {control} (p={_p(c.p_adjusted)})"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _verdict(report: ExperimentReport) -> str:
    found = [_sentence(c, report.control) for c in report.comparisons if c.significant]
    words, _ = _describe(report.primary_metric)
    if report.winner is not None:
        head = f"{report.winner} wins on {words}"
        return "; ".join([head, *found])
    if len(report.variants) < 2:
        return "only one variant: nothing to compare"
    if report.primary_metric.startswith("score:"):
        size = f"a difference of {DETECTABLE_EFFECT_SIZE} standard deviations in {words}"
    else:
        size = f"a {DETECTABLE_RATE_DIFFERENCE * 100:.0f}-point difference in {words}"
    tail = (
        f"no significant difference in {words} yet; "
        f"about {report.calls_needed} more calls per variant needed to detect {size}"
    )
    return "; ".join([*found, tail])


# --- the service -----------------------------------------------------------------------------


def _endpoint(session: Session, project_id: str, name: str) -> Endpoint:
    found = session.scalar(select(Endpoint).where(Endpoint.project_id == project_id, Endpoint.name == name))
    if found is None:
        raise NotFound(f"no endpoint named {name!r} in this project", param="endpoint")
    return found


def report(store: Store, project_id: str, endpoint: str) -> ExperimentReport:
    """The running experiment of an endpoint; 409 when it has no variants."""
    with store.session() as session:
        found = _endpoint(session, project_id, endpoint)
        variants = list((found.config or {}).get("variants") or [])
        started = found.experiment_started_at
        if not variants or started is None:
            raise Conflict(
                f"endpoint {endpoint!r} runs no experiment: give it variants to start one", param="endpoint"
            )
        results = {v["name"]: VariantResult(v["name"], float(v.get("weight", 1))) for v in variants}
        where = _calls(project_id, endpoint, started)
        _volumes(session, where, results)
        _percentiles(session, where, results)
        _feedback(session, project_id, where, results)
        _scores(session, project_id, where, results)
    ordered = list(results.values())
    comparisons = _compare(ordered)
    primary = _primary(ordered)
    winner = _winner(ordered[0].name, comparisons, primary)
    result = ExperimentReport(
        endpoint=endpoint,
        started_at=started,
        control=ordered[0].name,
        variants=ordered,
        comparisons=comparisons,
        primary_metric=primary,
        winner=winner,
        calls_needed=None if winner is not None or len(ordered) < 2 else _calls_needed(ordered, primary),
        verdict="",
    )
    result.verdict = _verdict(result)
    return result


def snapshot(result: ExperimentReport) -> dict[str, Any]:
    """The report as JSON, for the promotion event (what the decision was based on)."""
    data = asdict(result)
    data["started_at"] = result.started_at.isoformat()
    return data


def promote(
    endpoints: EndpointService,
    project_id: str,
    endpoint: str,
    variant: str,
    *,
    actor: str | None,
    note: str | None = None,
) -> EndpointView:
    """Serve only `variant` from now on, and end the experiment.

    The winner's prompt version is served through the endpoint's own label (the label is moved to
    it) or pinned version; its model and params become the endpoint's; the variants go. The event
    "promoted" keeps the report the decision was made on.
    """
    result = report(endpoints.store, project_id, endpoint)
    config = endpoints.get(project_id, endpoint).config
    winner = next((v for v in config.variants if v.name == variant), None)
    if winner is None:
        names = ", ".join(v.name for v in config.variants)
        raise UserError(
            f"endpoint {endpoint!r} has no variant {variant!r}; its variants: {names}", param="variant"
        )
    changes: dict[str, Any] = {
        "variants": [],
        "model": winner.model or config.model,
        "params": {**config.params, **winner.params},
    }
    move_to: int | None = None
    if config.prompt is not None and (winner.version is not None or winner.label is not None):
        chosen = endpoints.prompts.get(project_id, config.prompt, version=winner.version, label=winner.label)
        if config.version is not None:
            changes["version"] = chosen.version
        else:
            move_to = chosen.version
    update = EndpointUpdate.model_validate(changes)
    # Check the whole change before moving anything, so a refusal leaves both as they were.
    endpoints.checked(project_id, endpoint, update.applied_to(config))
    if move_to is not None and config.label is not None:
        # First the label, then the variants: in between, the variants that follow the endpoint's
        # label already serve the winner's version (on their own models).
        endpoints.prompts.set_label(project_id, config.prompt or "", config.label, move_to, actor=actor)
    detail = {"variant": variant, "label_moved_to": move_to, "note": note, "report": snapshot(result)}
    return endpoints.update(project_id, endpoint, update, actor=actor, kind="promoted", detail=detail)


__all__ = ["Comparison", "ExperimentReport", "Mean", "Rate", "VariantResult", "promote", "report", "snapshot"]
