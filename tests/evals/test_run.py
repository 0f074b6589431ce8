"""Real runs through the gateway in-process against the mock upstream, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from fmops.evals.runner import RUN_ATTRIBUTE, TARGET_ATTRIBUTE
from fmops.store.models import Span, SpanTag

REPLY = "Hello from the mock upstream."


def suite(cases: int = 6, **extra: object) -> dict[str, object]:
    return {
        "name": "greeting",
        "cases": [
            {"input": f"say hello {i}", "expected": REPLY if i % 2 == 0 else "Goodbye."} for i in range(cases)
        ],
        "targets": [{"model": "mock-a"}, {"model": "mock-b", "parameters": {"temperature": 0}}],
        "scorers": [
            {"name": "regex", "config": {"pattern": "^Hello"}, "weight": 1},
            {"name": "contains", "config": {"strings": ["mock"]}, "threshold": 0.5},
        ],
        "concurrency": 4,
        **extra,
    }


def test_a_run_calls_every_case_and_target_through_the_gateway_traced_with_the_run(world) -> None:
    run = world.run(suite())
    assert run.status == "succeeded", run.error
    rows = world.evals.rows(run.id)
    assert len(rows) == 12
    assert all(r["status"] == "ok" and r["output"] == REPLY for r in rows)
    assert all(r["scores"]["regex"]["value"] == 1.0 for r in rows)
    targets = run.summary["targets"]
    assert [t["name"] for t in targets] == ["mock-a", "mock-b"]
    assert targets[0]["score"]["mean"] == 1.0
    assert targets[0]["errors"] == 0
    assert targets[0]["cost"]["total"] > 0  # mock-a is priced
    assert targets[1]["latency_ms"]["p50"] >= 20  # mock-b answers in 20 ms
    assert len(world.mock.state.requests) == 12
    assert all(r["body"]["seed"] == 0 for r in world.mock.state.requests)
    with world.platform.store.session() as session:
        spans = session.scalars(select(Span).where(Span.project_id == world.project)).all()
    linked = [s for s in spans if (s.attributes or {}).get(RUN_ATTRIBUTE) == run.id]
    assert len(linked) == 12
    assert {s.attributes[TARGET_ATTRIBUTE] for s in linked} == {"mock-a", "mock-b"}
    assert {r["trace_id"] for r in rows} == {s.trace_id for s in linked}
    with world.platform.store.session() as session:
        tagged = session.scalars(select(SpanTag.span_id).where(SpanTag.tag == f"eval-run:{run.id}")).all()
    assert set(tagged) == {s.span_id for s in linked}


def test_a_rerun_answers_from_the_cache_and_calls_nothing(world) -> None:
    first = world.run(suite())
    calls = len(world.mock.state.requests)
    second = world.run(suite())
    assert len(world.mock.state.requests) == calls
    rows = world.evals.rows(second.id)
    assert all(r["cached"] for r in rows)
    assert second.summary["targets"][0]["spent"] == 0
    assert second.summary["targets"][0]["score"] == first.summary["targets"][0]["score"]
    # other parameters are another request: called again
    world.run(suite(seed=7))
    assert len(world.mock.state.requests) == calls + 12


def test_a_target_that_fails_for_some_cases_is_counted_apart(world) -> None:
    world.mock.script({"status": 400}, {"status": 400})
    run = world.run(suite(concurrency=1))
    assert run.status == "succeeded"
    summary = run.summary["targets"]
    assert sum(t["errors"] for t in summary) == 2
    assert sum(t["ok"] for t in summary) == 10
    errored = [r for r in world.evals.rows(run.id) if r["status"] == "error"]
    assert all(r["score"] is None and r["error"] for r in errored)
    assert all(t["score"]["mean"] == 1.0 for t in summary)  # errors are not wrong answers


def test_an_aggregate_scorer_is_summarised_by_its_own_metric(world) -> None:
    labels = ["hello", "hello", "hello", "bye"]  # the mock always answers hello
    run = world.run(
        {
            "name": "classes",
            "cases": [{"input": f"c{i}", "expected": label} for i, label in enumerate(labels)],
            "targets": [{"model": "mock-a"}],
            "scorers": [
                {"name": "classification", "config": {"labels": ["hello", "bye"], "extract": "search"}}
            ],
        }
    )
    agg = run.summary["targets"][0]["scorers"]["classification"]
    # hello: precision 3/4, recall 1, F1 6/7; bye: never predicted, F1 0 -> macro-F1 3/7, not the 0.75 mean
    assert agg["mean"] == pytest.approx(3 / 7)
    assert agg["metrics"]["accuracy"] == pytest.approx(0.75)
    assert agg["details"]["matrix"]
    low, high = agg["ci"]
    assert low <= agg["mean"] <= high


def test_field_match_summarises_each_fields_rate(world) -> None:
    expected = {"category": "billing", "priority": "low"}
    run = world.run(
        {
            "name": "fields",
            "cases": [{"input": f"c{i}", "expected": expected} for i in range(3)],
            "targets": [{"model": "mock-a"}],
            "scorers": [{"name": "exact_match"}, {"name": "field_match", "weight": 0}],
        }
    )
    agg = run.summary["targets"][0]["scorers"]["field_match"]
    # The mock answers prose, not JSON: every field misses, and each field's rate says so.
    assert agg["metrics"]["field.category"] == 0.0
    assert agg["metrics"]["field.priority"] == 0.0
    assert agg["weight"] == 0.0


def test_a_judge_that_cannot_be_parsed_leaves_the_case_undecided_not_zero(world) -> None:
    world.mock.script(*[{"reply": "A fine answer."}] * 2, *[{"reply": '{"score": 4, "reason": "ok"}'}] * 2)
    run = world.run(
        {
            "name": "judged",
            "cases": [{"input": "c0", "expected": "x"}, {"input": "c1", "expected": "x"}],
            "targets": [{"model": "mock-a"}],
            "scorers": [
                {"name": "judge", "config": {"model": "mock-b", "rubric": "Be right.", "retries": 1}}
            ],
            "concurrency": 1,
        }
    )
    rows = world.evals.rows(run.id)
    verdicts = [r["scores"]["judge"] for r in rows]
    assert all(r["status"] == "ok" for r in rows)  # the target answered; the judge could not decide
    assert any(v["value"] is None and v["label"] not in ("pass", "fail") for v in verdicts)
    assert not any(v["value"] == 0 for v in verdicts)  # never scored 0 silently
    agg = run.summary["targets"][0]["scorers"]["judge"]
    assert agg["undecided"] >= 1
    with world.platform.store.session() as session:
        spans = session.scalars(select(Span).where(Span.project_id == world.project)).all()
    judged = [s for s in spans if (s.attributes or {}).get("fmops.eval.scorer") == "judge"]
    assert judged
    assert all(s.attributes[RUN_ATTRIBUTE] == run.id for s in judged)


def test_a_pairwise_judge_compares_two_targets_in_both_orders(world) -> None:
    cases = [{"input": f"c{i}", "expected": "x"} for i in range(3)]
    # the 6 target calls come first; then, case by case, the judge in both orders: "A" first, "B" with
    # the answers swapped, so both orders prefer the first target's answer
    world.mock.script(
        *[{"reply": REPLY}] * 6,
        *[{"reply": '{"winner": "A", "reason": "r"}'}, {"reply": '{"winner": "B", "reason": "r"}'}] * 3,
    )
    run = world.run(
        {
            "name": "pair",
            "cases": cases,
            "targets": [{"model": "mock-a"}, {"model": "mock-b"}],
            "scorers": [{"name": "regex", "config": {"pattern": "mock"}}],
            "pairwise": {"a": "mock-a", "b": "mock-b", "config": {"model": "mock-b"}},
            "concurrency": 1,
        }
    )
    pair = run.summary["pairwise"]
    assert (pair["a_wins"], pair["b_wins"], pair["ties"], pair["undecided"]) == (3, 0, 0, 0)
    assert pair["a_win_rate"] == 1.0
    assert pair["p_value"] == pytest.approx(0.25)  # 3 of 3 decisive cases: 2 / 2**3
    assert [v["case_index"] for v in pair["verdicts"]] == [0, 1, 2]


def test_pairwise_names_targets_of_the_suite() -> None:
    from fmops.evals.suite import parse_suite

    _, problems = parse_suite(
        {
            "name": "s",
            "cases": ["x"],
            "targets": [{"model": "alpha"}, {"model": "beta"}],
            "scorers": ["json"],
            "pairwise": {"a": "alpa", "b": "beta", "judge": {}},
        }
    )
    text = "\n".join(problems)
    assert "pairwise.judge: unknown field (known: a, b, config)" in text
    assert "pairwise.a: a target's name (did you mean 'alpha'?)" in text
    assert "pairwise.config" in text
