"""Experiment reports over spans and scores seeded with known numbers, on SQLite and PostgreSQL.

The expected intervals and p-values are worked out by hand in the comments (closed forms for two
degrees of freedom, R for the rest), so the SQL aggregation and the maths are checked together.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from fmops.endpoints.experiments import ExperimentReport, report
from fmops.errors import Conflict, NotFound
from fmops.store import Store
from fmops.store.models import Endpoint
from support.stats_data import T0, child, insert_rows, score, span

PROJECT = "p" * 32
STARTED = T0 + timedelta(hours=1)


def endpoint(store: Store, name: str, variants: list[str] | None, project_id: str = PROJECT) -> None:
    config: dict[str, Any] = {"model": "m"}
    if variants:
        config["variants"] = [{"name": v, "weight": 1} for v in variants]
    with store.session() as session:
        session.add(
            Endpoint(
                project_id=project_id,
                name=name,
                config=config,
                experiment_started_at=STARTED if variants else None,
            )
        )


def call(name: str, variant: str, minute: int, **columns: Any) -> dict[str, Any]:
    return span(PROJECT, STARTED + timedelta(minutes=minute), endpoint=name, variant=variant, **columns)


def seeded(store: Store, spans: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
    """Insert, then let PostgreSQL gather statistics as autovacuum would on a live database: the
    planner of a never-analysed table guesses one row and may loop over every score per call."""
    insert_rows(store, spans, scores)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(text("ANALYZE spans"))
            conn.execute(text("ANALYZE scores"))


def comparison(result: ExperimentReport, metric: str) -> Any:
    return next(c for c in result.comparisons if c.metric == metric)


def seed_known(store: Store) -> None:
    """Variant a: 3 fast calls and an error; b: 4 slower calls. Thumbs, scores and noise around them."""
    endpoint(store, "bot", ["a", "b"])
    a = [call("bot", "a", i, latency_ms=v, cost=c) for i, (v, c) in enumerate([(100, 0.001), (200, 0.002)])]
    # A call made inside an application's trace (the SDK sent a traceparent) counts like any other.
    app = span(PROJECT, STARTED + timedelta(minutes=2), name="my-app", latency_ms=9_000)
    a.append(child(app, endpoint="bot", variant="a", latency_ms=300, cost=0.003))
    a.append(call("bot", "a", 3, latency_ms=50, status="error"))
    b = [call("bot", "b", i, latency_ms=v, cost=0.004) for i, v in enumerate([400, 500, 600, 700])]
    noise = [
        call("bot", "a", -5, latency_ms=9_000),  # before the experiment started
        app,  # the application's own span: not a call to the endpoint
        child(a[0], name="tool", latency_ms=9_000),  # a step inside a call's trace
        call("other", "a", 1, latency_ms=9_000),  # another endpoint
        span("q" * 32, STARTED, endpoint="bot", variant="a", latency_ms=9_000),  # another project
        call("bot", "gone", 1, latency_ms=9_000),  # a variant the endpoint no longer has
    ]
    thumbs = [
        score(a[0], "thumbs", 1, source="human"),
        score(a[1], "thumbs", 1, source="human"),
        score(a[1], "thumbs", -1, source="api"),  # nets to zero: not positive
        score(a[2], "thumbs", -1, source="human"),
        *(score(s, "thumbs", 1, source="human") for s in b),
        score(a[2], "thumbs", 1, source="evaluator"),  # an evaluator's thumbs are not feedback
    ]
    scores = [
        score(a[0], "number", 0.5, source="evaluator", name="accuracy"),
        score(a[1], "number", 0.6, source="evaluator", name="accuracy"),
        score(a[1], "number", 0.8, source="evaluator", name="accuracy"),  # averaged per call: 0.7
        score(b[0], "number", 0.8, source="evaluator", name="accuracy"),
        score(b[1], "number", 1.0, source="evaluator", name="accuracy"),
        score(b[2], "number", 5, source="human", name="accuracy"),  # a person's rating, not an evaluator's
    ]
    seeded(store, [*a, *b, *noise], [*thumbs, *scores])


def test_report_has_hand_computed_intervals_and_p_values(store: Store) -> None:
    seed_known(store)
    endpoint(store, "plain", None)
    endpoint(store, "elsewhere", ["a", "b"], project_id="q" * 32)
    with pytest.raises(Conflict, match="runs no experiment"):
        report(store, PROJECT, "plain")
    with pytest.raises(NotFound, match="no endpoint named 'elsewhere'"):
        report(store, PROJECT, "elsewhere")  # another project's endpoint is invisible

    result = report(store, PROJECT, "bot")
    a, b = result.variants
    assert (result.control, a.name, b.name) == ("a", "a", "b")
    assert (a.calls, b.calls) == (4, 4)

    # Error rate 1/4: Wilson (0.0456, 0.6994); 0/4: (0, 0.4899).
    assert (a.error_rate.successes, a.error_rate.n, a.error_rate.value) == (1, 4, 0.25)
    assert a.error_rate.interval is not None
    assert b.error_rate.interval is not None
    assert (a.error_rate.interval.low, a.error_rate.interval.high) == pytest.approx(
        (0.0456, 0.6994), abs=1e-4
    )
    assert (b.error_rate.interval.low, b.error_rate.interval.high) == pytest.approx((0.0, 0.4899), abs=1e-4)

    # Latency of successful calls: a 100/200/300 -> mean 200, s 100, t(.975, 2) = 4.3027 -> ±248.41;
    # b 400..700 -> mean 550, s 129.10, t(.975, 3) = 3.1824 -> ±205.43.
    assert (a.latency_ms.n, a.latency_ms.value, a.latency_ms.sd) == (3, 200.0, pytest.approx(100.0))
    assert a.latency_ms.interval is not None
    assert b.latency_ms.interval is not None
    # (200 - 248.41 is clipped: a latency is never negative)
    assert (a.latency_ms.interval.low, a.latency_ms.interval.high) == (0.0, pytest.approx(448.41, abs=0.01))
    assert b.latency_ms.interval.low == pytest.approx(550 - 205.43, abs=0.01)
    # percentile_cont: a at positions 1 and 1.9 -> 200, 290; b at 1.5 and 2.85 -> 550, 685.
    assert (a.latency_p50_ms, a.latency_p95_ms) == pytest.approx((200.0, 290.0))
    assert (b.latency_p50_ms, b.latency_p95_ms) == pytest.approx((550.0, 685.0))

    assert (a.cost.value, b.cost.value) == pytest.approx((0.002, 0.004))
    assert b.cost.interval is not None
    assert b.cost.interval.low == pytest.approx(0.004)  # a constant: no spread

    # Feedback: a has one positive call of three rated (one nets to zero), b four of four.
    assert (a.positive_feedback.successes, a.positive_feedback.n) == (1, 3)
    assert (b.positive_feedback.successes, b.positive_feedback.n) == (4, 4)
    # Evaluator scores only, averaged per call: a 0.5, 0.7; b 0.8, 1.0.
    assert (a.scores["accuracy"].n, a.scores["accuracy"].value) == (2, pytest.approx(0.6))
    assert (b.scores["accuracy"].n, b.scores["accuracy"].value) == (2, pytest.approx(0.9))

    raw = {
        # z = 0.25 / sqrt(1/8 · 7/8 · 1/2) = 1.0690 -> p = erfc(z / √2)
        "error_rate": 0.285049,
        # R: t.test(c(100, 200, 300), c(400, 500, 600, 700)) -> p = 0.01008
        "latency_ms": 0.010077,
        # t = 0.002 / sqrt(1e-6 / 3) = 2√3 with df = 2: p = 1 - t / sqrt(2 + t²)
        "cost": 1 - 2 * math.sqrt(3) / math.sqrt(14),
        # pooled 5/7, se = sqrt(5/7 · 2/7 · 7/12) -> z = 1.9322
        "positive_feedback": 0.053337,
        # t = 0.3 / sqrt(0.01 + 0.01) with df = 2: p = 1 - t / sqrt(2 + t²)
        "score:accuracy": 1 - 0.3 / math.sqrt(0.02) / math.sqrt(2 + 0.09 / 0.02),
    }
    for metric, p in raw.items():
        assert comparison(result, metric).p_value == pytest.approx(p, abs=1e-6), metric
    # Holm over the five: 5·p(latency), 4·p(feedback), 3·p(cost), then 2·p(score) for both others.
    holm = {
        "latency_ms": 5 * raw["latency_ms"],
        "positive_feedback": 4 * raw["positive_feedback"],
        "cost": 3 * raw["cost"],
        "score:accuracy": 2 * raw["score:accuracy"],
        "error_rate": 2 * raw["score:accuracy"],
    }
    for metric, p in holm.items():
        assert comparison(result, metric).p_adjusted == pytest.approx(p, abs=1e-5), metric
    # Latency alone would pass at 0.05; corrected for five looks at the data, nothing does.
    assert not any(c.significant for c in result.comparisons)
    assert result.winner is None
    assert result.primary_metric == "positive_feedback"
    assert result.calls_needed is not None
    assert result.calls_needed > 100
    assert result.verdict == (
        "no significant difference in positive-feedback rate yet; "
        f"about {result.calls_needed} more calls per variant needed to detect "
        "a 5-point difference in positive-feedback rate"
    )


def thumbs_experiment(store: Store, name: str, positives: dict[str, int], calls: int = 400) -> None:
    endpoint(store, name, list(positives))
    spans, scores = [], []
    for variant, up in positives.items():
        for i in range(calls):
            row = call(name, variant, i % 50, latency_ms=100.0 + i % 7, cost=0.001)
            spans.append(row)
            scores.append(score(row, "thumbs", 1 if i < up else -1, source="human"))
    seeded(store, spans, scores)


def test_a_clear_winner_is_called_and_a_tie_is_not(store: Store) -> None:
    # 40% vs 60% positive over 400 calls each: z = 5.66, p = 1.5e-8 (prop.test agrees).
    thumbs_experiment(store, "clear", {"a": 160, "b": 240})
    clear = report(store, PROJECT, "clear")
    assert comparison(clear, "positive_feedback").p_value == pytest.approx(1.5417e-8, rel=1e-3)
    assert clear.winner == "b"
    assert clear.calls_needed is None
    assert (
        clear.verdict
        == "b wins on positive-feedback rate; b has a higher positive-feedback rate than a (p=<0.001)"
    )

    # Reversed: the control beats every other variant.
    thumbs_experiment(store, "control-wins", {"a": 240, "b": 160, "c": 150})
    assert report(store, PROJECT, "control-wins").winner == "a"

    # 50% vs 51%: p = 0.777; no winner, and how much more data a 5-point difference needs.
    thumbs_experiment(store, "tie", {"a": 200, "b": 204})
    tie = report(store, PROJECT, "tie")
    assert comparison(tie, "positive_feedback").p_value == pytest.approx(0.7773, abs=1e-4)
    assert tie.winner is None
    # Fleiss at 50.5% vs 55.5%: 1,563 per variant, less the 400 each already has.
    assert tie.calls_needed == 1563 - 400
    assert tie.verdict.startswith("no significant difference in positive-feedback rate yet; about 1163 more")
