"""Annotation queues on both backends: sampling, who sees a queue, decisions as feedback, progress,
agreement and the export to a dataset version."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from fmops.annotation import DecisionCreate, QueueCreate
from fmops.annotation.agreement import cohen_kappa
from fmops.errors import Conflict, NotFound, PermissionDenied, UserError
from fmops.feedback import FeedbackService, parse_feedback
from fmops.store.models import AnnotationItem, Span
from support.annotation_world import World

SCHEMA = [{"name": "topic", "values": ["billing", "shipping", "other"]}]


def queue_body(**fields: object) -> QueueCreate:
    return QueueCreate.model_validate({"name": "support", "label_schema": SCHEMA, **fields})


def decide(world: World, who: str, queue: str, action: str, **fields: object) -> None:
    item = world.service.next_item(world.principals[who], queue)
    assert item is not None
    world.service.decide(
        world.principals[who], queue, item.id, DecisionCreate.model_validate({"action": action, **fields})
    )


def test_a_queue_samples_matching_chat_traces_and_copies_them(world: World) -> None:
    kept = [world.trace(f"question {i}", f"answer {i}", ago=i) for i in range(30)]
    world.trace("other model", "x", model="big")
    eng = world.principals["engineer"]
    full = world.service.create(eng, queue_body(filter={"model": "small"}))
    assert full.progress.total == 30
    assert full.queue.filter == {"model": "small"}
    # Sampling is by trace id: a 30% queue holds a subset of the full one, the same one every time.
    half = world.service.create(eng, queue_body(name="sampled", filter={"model": "small"}, sampling_rate=0.3))
    again = world.service.create(eng, queue_body(name="again", filter={"model": "small"}, sampling_rate=0.3))
    with world.platform.store.session() as session:
        traces = {
            q: set(session.scalars(select(AnnotationItem.trace_id).where(AnnotationItem.queue_id == q)))
            for q in (half.queue.id, again.queue.id)
        }
    assert traces[half.queue.id] == traces[again.queue.id] < set(kept)
    assert 0 < len(traces[half.queue.id]) < 30
    # Items are copies: the spans' deletion (retention) leaves the queue whole.
    with world.platform.store.session() as session:
        session.execute(delete(Span))
    item = world.service.next_item(world.principals["ann"], "support")
    assert item is not None
    assert item.input["messages"][1]["content"].startswith("question")


def test_bad_queues_are_refused_with_reasons(world: World) -> None:
    world.trace("q", "a")
    eng = world.principals["engineer"]
    with pytest.raises(UserError, match="unknown trace filter"):
        world.service.create(eng, queue_body(filter={"colour": "red"}))
    with pytest.raises(UserError, match="no chat traces"):
        world.service.create(eng, queue_body(filter={"model": "nothing-like-it"}))
    with pytest.raises(PermissionDenied):
        world.service.create(world.principals["ann"], queue_body())
    world.service.create(eng, queue_body())
    with pytest.raises(Conflict):
        world.service.create(eng, queue_body())
    with pytest.raises(ValueError, match="distinct"):
        queue_body(label_schema=[{"name": "t", "values": ["a", "a"]}])


def test_annotators_see_their_queues_only_and_other_projects_see_none(world: World) -> None:
    world.trace("q", "a")
    eng = world.principals["engineer"]
    world.service.create(eng, queue_body(name="open"))
    world.service.create(eng, queue_body(name="for-ann", annotators=["ann"]))
    assert {v.queue.name for v in world.service.queues(world.principals["ann"])} == {"open", "for-ann"}
    assert {v.queue.name for v in world.service.queues(world.principals["abe"])} == {"open"}
    with pytest.raises(NotFound):
        world.service.get(world.principals["abe"], "for-ann")
    queue_id = world.service.get(eng, "open").id
    for ref in ("open", queue_id):  # another project's annotator: a 404 by name and by id
        with pytest.raises(NotFound):
            world.service.get(world.principals["outsider"], ref)
    assert world.service.queues(world.principals["outsider"]) == []
    with pytest.raises(PermissionDenied):
        world.service.decide(world.principals["consumer"], "open", "0" * 32, DecisionCreate(action="accept"))


def test_decisions_are_feedback_and_the_export_is_a_dataset_version(world: World) -> None:
    traces = [world.trace(f"where is my order {i}?", f"it ships today {i}", ago=i) for i in range(3)]
    eng, ann = world.principals["engineer"], world.principals["ann"]
    world.service.create(eng, queue_body(dataset="support-reviewed"))
    decide(world, "ann", "support", "accept", labels={"topic": "shipping"})
    decide(
        world,
        "ann",
        "support",
        "correct",
        corrected_output="It shipped yesterday.",
        labels={"topic": "billing"},
    )
    decide(world, "ann", "support", "skip")
    assert world.service.next_item(ann, "support") is None  # nothing left for her
    progress = world.service.view(ann, "support").progress
    assert (progress.total, progress.done, progress.skipped, progress.remaining) == (3, 2, 1, 0)
    assert (progress.mine_done, progress.mine_skipped) == (2, 1)
    assert world.service.next_item(world.principals["abe"], "support") is not None  # the skipped one

    feedback = FeedbackService(world.platform.store)
    first = [
        (s.kind, s.name, s.value, s.label, s.author)
        for s in feedback.list_for_trace(eng.project_id, traces[0])
    ]
    assert first == [("thumbs", "thumbs", 1.0, None, "ann"), ("label", "topic", None, "shipping", "ann")]
    second = feedback.list_for_trace(eng.project_id, traces[1])
    assert second[0].corrected_output == {"role": "assistant", "content": "It shipped yesterday."}
    assert feedback.list_for_trace(eng.project_id, traces[2]) == []  # a skip is no judgement

    with pytest.raises(UserError, match="not one of"):
        world.service.decide(
            ann,
            "support",
            world.service.next_item(world.principals["abe"], "support").id,  # type: ignore[union-attr]
            DecisionCreate(action="accept", labels={"topic": "weather"}),
        )
    version = world.service.export(eng, "support")
    assert (version.name, version.rows, version.kind) == ("support-reviewed", 2, "chat")
    assert version.source["type"] == "annotation"
    records = [r for batch in world.datasets.iter_records(version) for r in batch]
    by_trace = {r["metadata"]["trace_id"]: r for r in records}
    assert by_trace[traces[0]]["messages"][-1]["content"] == "it ships today 0"
    assert by_trace[traces[1]]["messages"][-1]["content"] == "It shipped yesterday."
    assert by_trace[traces[1]]["metadata"]["labels"] == {"topic": "billing"}
    assert by_trace[traces[1]]["messages"][0] == {
        "role": "system",
        "content": "You are the shop's assistant.",
    }


def test_overlap_gives_each_item_to_two_people_and_measures_agreement(world: World) -> None:
    for i in range(4):
        world.trace(f"q{i}", f"a{i}", ago=i)
    eng = world.principals["engineer"]
    world.service.create(eng, queue_body(overlap=2))
    ann_labels = ["billing", "shipping", "billing", "other"]
    abe_labels = ["billing", "shipping", "shipping", "other"]
    for a, b in zip(ann_labels, abe_labels, strict=True):
        decide(world, "ann", "support", "accept", labels={"topic": a})
        decide(world, "abe", "support", "accept", labels={"topic": b})
    queue = world.service.get(eng, "support")
    assert world.service.progress(queue).done == 4
    topic = {a.field: a for a in world.service.agreement(queue)}["topic"]
    assert (topic.pairs, topic.observed) == (4, 0.75)
    assert topic.kappa == pytest.approx(cohen_kappa(list(zip(ann_labels, abe_labels, strict=True))))
    assert topic.kappa == pytest.approx((0.75 - 0.3125) / (1 - 0.3125))


def test_cohen_kappa_matches_a_worked_example() -> None:
    # 50 items: both yes 20, both no 15, a yes/b no 5, a no/b yes 10 -> p_o 0.7, p_e 0.5, kappa 0.4.
    pairs = [("y", "y")] * 20 + [("n", "n")] * 15 + [("y", "n")] * 5 + [("n", "y")] * 10
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a")] * 3) == 1.0
    assert cohen_kappa([]) is None


def test_an_annotator_may_score_queued_traces_only(world: World) -> None:
    queued = world.trace("queued", "a")
    world.service.create(world.principals["engineer"], queue_body(filter={"trace_id": queued}))
    other = world.trace("not queued", "b")
    feedback = FeedbackService(world.platform.store)
    ann = world.principals["ann"]
    assert (
        feedback.record(ann, parse_feedback({"trace_id": queued, "kind": "thumbs", "value": -1})).author
        == "ann"
    )
    with pytest.raises(NotFound):
        feedback.record(ann, parse_feedback({"trace_id": other, "kind": "thumbs", "value": -1}))
    with pytest.raises(NotFound):  # a consumer still only their own
        feedback.record(
            world.principals["consumer"], parse_feedback({"trace_id": queued, "kind": "thumbs", "value": 1})
        )
