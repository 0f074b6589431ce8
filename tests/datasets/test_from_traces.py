"""Dataset versions from traces on both backends: the trace search's filters, corrections replacing
answers, preference pairs from feedback, copies not pointers, and "add to dataset" from one trace."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from fmops.datasets.from_traces import TraceDatasets, chat_example, parse_filter
from fmops.errors import UserError
from fmops.feedback import FeedbackService, parse_feedback
from fmops.platform import Platform
from fmops.store.models import Span
from support.annotation_world import World, make_world


@pytest.fixture
def world(platform: Platform) -> World:
    return make_world(platform)


def _records(world: World, version: Any) -> list[dict[str, Any]]:
    return [r for batch in world.datasets.iter_records(version) for r in batch]


def _feedback(world: World, trace_id: str, **score: Any) -> None:
    service = FeedbackService(world.platform.store)
    service.record(world.principals["engineer"], parse_feedback({"trace_id": trace_id, **score}))


def _builder(world: World) -> TraceDatasets:
    return TraceDatasets(world.platform.store, world.datasets)


def test_filtered_traces_become_chat_records_with_corrections_applied(world: World) -> None:
    good = world.trace("How do I reset my password?", "Use the reset link.", endpoint="support")
    fixed = world.trace("Do you ship to Norway?", "No.", endpoint="support", ago=1)
    world.trace("Unrelated", "x", endpoint="sales", ago=2)
    world.trace("An embedding", {"vectors": 1, "dimensions": 3}, endpoint="support", ago=3)
    _feedback(world, good, kind="thumbs", value=1)
    _feedback(
        world, fixed, kind="correction", corrected_output={"role": "assistant", "content": "Yes, in 5 days."}
    )
    project = world.principals["engineer"].project_id
    version, counts = _builder(world).build(
        project_id=project, name="support-sft", filters=parse_filter({"endpoint": "support"})
    )
    assert (version.kind, version.rows, counts.corrected, counts.not_chat) == ("chat", 2, 1, 1)
    assert version.source == {
        "type": "traces",
        "filter": {"endpoint": "support"},
        "trace_ids": 2,
        "corrected_only": False,
        "preference": False,
    }
    # Copies, not pointers: the spans' deletion (retention) changes nothing in the version.
    with world.platform.store.session() as session:
        session.execute(delete(Span))
    records = {r["metadata"]["trace_id"]: r for r in _records(world, version)}
    assert records[good]["messages"] == [
        {"role": "system", "content": "You are the shop's assistant."},
        {"role": "user", "content": "How do I reset my password?"},
        {"role": "assistant", "content": "Use the reset link."},
    ]
    assert records[fixed]["messages"][-1]["content"] == "Yes, in 5 days."
    assert records[fixed]["metadata"]["corrected"] is True
    assert records[good]["metadata"]["endpoint"] == "support"


def test_corrected_only_and_feedback_and_score_filters(world: World) -> None:
    liked = world.trace("a", "A", ago=1)
    fixed = world.trace("b", "B", ago=2)
    scored = world.trace("c", "C", ago=3)
    _feedback(world, liked, kind="thumbs", value=1)
    _feedback(world, fixed, kind="correction", corrected_output="B, corrected")
    _feedback(world, scored, kind="number", name="judge", value=4.5, source="evaluator")
    project = world.principals["engineer"].project_id
    build = _builder(world).build
    only, _ = build(project_id=project, name="fixed", filters=parse_filter({}), corrected_only=True)
    assert [r["metadata"]["trace_id"] for r in _records(world, only)] == [fixed]
    positive, _ = build(project_id=project, name="liked", filters=parse_filter({"feedback": "positive"}))
    assert [r["metadata"]["trace_id"] for r in _records(world, positive)] == [liked]
    judged, _ = build(
        project_id=project, name="judged", filters=parse_filter({"score_name": "judge", "min_score": 4})
    )
    assert [r["metadata"]["trace_id"] for r in _records(world, judged)] == [scored]
    with pytest.raises(UserError, match="no corrected traces"):
        build(project_id=project, name="none", filters=parse_filter({"model": "big"}), corrected_only=True)


def test_preference_pairs_from_corrections_and_from_thumbs_on_one_input(world: World) -> None:
    fixed = world.trace("Capital of Australia?", "Sydney.", ago=1)
    _feedback(world, fixed, kind="correction", corrected_output={"role": "assistant", "content": "Canberra."})
    up = world.trace("Say hi", "Hello there!", ago=2)
    down = world.trace("Say hi", "I cannot help with that.", ago=3)
    lonely = world.trace("Say bye", "Bye!", ago=4)  # a thumbs up with no thumbs down on its input
    for trace, value in ((up, 1), (down, -1), (lonely, 1)):
        _feedback(world, trace, kind="thumbs", value=value)
    project = world.principals["engineer"].project_id
    version, _ = _builder(world).build(
        project_id=project, name="prefs", filters=parse_filter({}), preference=True
    )
    assert (version.kind, version.rows) == ("preference", 2)
    pairs = {r["metadata"]["pair"]: r for r in _records(world, version)}
    assert pairs["correction"]["chosen"] == [{"role": "assistant", "content": "Canberra."}]
    assert pairs["correction"]["rejected"] == [{"role": "assistant", "content": "Sydney."}]
    assert pairs["correction"]["prompt"][-1] == {"role": "user", "content": "Capital of Australia?"}
    thumbs = pairs["thumbs"]
    assert thumbs["chosen"][0]["content"] == "Hello there!"
    assert thumbs["rejected"][0]["content"] == "I cannot help with that."
    assert (thumbs["metadata"]["trace_id"], thumbs["metadata"]["rejected_trace_id"]) == (up, down)


def test_add_a_trace_makes_a_new_version_on_top_of_the_latest(world: World) -> None:
    first = world.trace("one", "1")
    second = world.trace("two", "2")
    project = world.principals["engineer"].project_id
    builder = _builder(world)
    v1 = builder.add_trace(project_id=project, name="picked", trace_id=first)
    v2 = builder.add_trace(project_id=project, name="picked", trace_id=second)
    assert (v1.version, v1.rows, v1.parent_id) == (1, 1, None)
    assert (v2.version, v2.rows, v2.parent_id) == (2, 2, v1.id)
    assert [r["metadata"]["trace_id"] for r in _records(world, v2)] == [first, second]
    with pytest.raises(UserError, match="no chat example"):
        builder.add_trace(project_id=project, name="picked", trace_id="f" * 32)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"colour": "red"}, "unknown trace filter"),
        ({"model": 5}, "filter.model"),
        ({"start": "not a time"}, "filter.start"),
        ({"min_score": 1}, "need score_name"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "must be before end"),
    ],
)
def test_bad_filters_name_what_to_fix(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_filter(data)


def test_chat_example_reads_the_gateway_shapes() -> None:
    text_parts = {
        "role": "assistant",
        "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}],
    }
    example = chat_example(
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, text_parts
    )
    assert example is not None
    assert example.answer == {"role": "assistant", "content": "hello"}
    assert example.tools == [{"type": "function"}]
    assert chat_example({"input": ["text"], "count": 1}, {"vectors": 1}) is None
    assert chat_example({"messages": [{"role": "user", "content": "hi"}]}, None) is None  # a failed call
    two_choices = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert chat_example({"messages": [{"role": "user", "content": "hi"}]}, two_choices) is None
