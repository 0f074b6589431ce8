"""Latency and cost bounds read what the call recorded: a span's latency_ms and cost."""

from __future__ import annotations

import pytest

from fmops.errors import UserError
from fmops.scorers import Case, build

SPAN = {
    "trace_id": "t" * 32,
    "input": {"messages": [{"role": "user", "content": "hi"}]},
    "output": {"role": "assistant", "content": "hello"},
    "latency_ms": 850.0,
    "cost": 0.0012,
}


def test_bounds_on_a_span() -> None:
    case = Case.from_span(SPAN)
    assert (case.latency_ms, case.cost) == (850.0, 0.0012)
    fast = build("latency", {"max_ms": 1000}).score(case)
    assert (fast.value, fast.label, fast.comment, fast.data) == (1.0, "pass", "850 ms", {"latency_ms": 850.0})
    slow = build("latency", {"max_ms": 500}).score(case)
    assert (slow.value, slow.comment) == (0.0, "850 ms, over the bound of 500 ms")
    assert build("cost", {"max_usd": 0.01}).score(case).value == 1.0
    dear = build("cost", {"max_usd": 0.001}).score(case)
    assert (dear.value, dear.comment) == (0.0, "$0.0012, over the bound of $0.001")
    assert (
        build("cost", {"max_usd": 0}).score(Case.of(None, "x", cost=0.0)).value == 1.0
    )  # a free local model


def test_a_call_without_records_is_undecided() -> None:
    bare = Case.from_span({**SPAN, "latency_ms": None, "cost": "n/a"})
    assert build("latency", {"max_ms": 1}).score(bare).label == "no_latency"
    assert build("cost", {"max_usd": 1}).score(bare).label == "no_cost"
    assert build("latency", {"max_ms": 1}).score(bare).value is None


@pytest.mark.parametrize(
    ("name", "config", "param"),
    [
        ("latency", {}, "config.max_ms"),
        ("latency", {"max_ms": 0}, "config.max_ms"),
        ("latency", {"max_ms": "fast"}, "config.max_ms"),
        ("cost", {"max_usd": -1}, "config.max_usd"),
        ("cost", {"max_usd": 1, "currency": "EUR"}, "config.currency"),
    ],
)
def test_bad_bounds(name: str, config: dict[str, object], param: str) -> None:
    with pytest.raises(UserError) as caught:
        build(name, config)
    assert caught.value.param == param
    assert param in caught.value.message
