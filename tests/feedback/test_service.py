"""Scores on traces, on both backends: every kind, validation, project isolation and consumer rules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from fmops.auth import Principal, Role
from fmops.errors import NotFound, PermissionDenied
from fmops.feedback import FeedbackCreate, FeedbackService, parse_feedback
from fmops.gateway.spans import CallRecord, new_span_id, new_trace_id
from fmops.platform import Platform
from fmops.store import utcnow
from fmops.store.models import Score, Span


@dataclass
class World:
    platform: Platform
    service: FeedbackService
    engineer: Principal
    alice: Principal  # consumer
    bob: Principal  # consumer
    outsider: Principal  # engineer of another project

    def key(self, user: str, role: Role, project: str = "default") -> Principal:
        _, plaintext = self.platform.auth.create_key(
            name=f"{user}-{role}-{new_span_id()}", role=role, creator=None, project=project, user=user
        )
        return self.platform.auth.authenticate(plaintext)

    def trace(self, by: Principal, *, user: str | None = None, spans: int = 1) -> tuple[str, list[str]]:
        """A trace as the gateway records it: the caller's key, `user` from the request or the key's user."""
        trace_id = new_trace_id()
        span_ids = [new_span_id() for _ in range(spans)]
        with self.platform.store.session() as session:
            for span_id in span_ids:
                session.add(
                    Span(
                        span_id=span_id,
                        trace_id=trace_id,
                        project_id=by.project_id,
                        name="chat small",
                        start_time=utcnow(),
                        model="small",
                        key_id=by.key_id,
                        user=user or by.user_name,
                        input={"messages": [{"role": "user", "content": "hi"}]},
                        output={"content": "hello"},
                        attributes={},
                    )
                )
        return trace_id, span_ids


@pytest.fixture
def world(platform: Platform) -> World:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        default = auth.project_by_name(session, "default").id
    for name, role in (("eve", Role.engineer), ("alice", Role.consumer), ("bob", Role.consumer)):
        auth.create_user(name, role=role, project_id=default)
    other = auth.create_project("other").id
    auth.create_user("mallory", role=Role.engineer, project_id=other)
    w = World(platform, FeedbackService(platform.store, platform.tracer), *([None] * 4))  # type: ignore[arg-type]
    w.engineer = w.key("eve", Role.engineer)
    w.alice = w.key("alice", Role.consumer)
    w.bob = w.key("bob", Role.consumer)
    w.outsider = w.key("mallory", Role.engineer, project="other")
    return w


def body(trace_id: str, **fields: Any) -> FeedbackCreate:
    return parse_feedback({"trace_id": trace_id, **fields})


# --- each kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [(1, 1.0), (-1, -1.0), (True, 1.0), (False, -1.0)])
def test_thumbs_are_stored_as_plus_or_minus_one(world: World, given: Any, stored: float) -> None:
    trace_id, _ = world.trace(world.alice)
    score = world.service.record(world.alice, body(trace_id, kind="thumbs", value=given))
    assert (score.kind, score.name, score.value, score.source) == ("thumbs", "thumbs", stored, "human")
    assert score.author == "alice"
    assert score.key_id == world.alice.key_id
    assert score.project_id == world.alice.project_id


def test_every_kind_round_trips_through_list_for_trace(world: World) -> None:
    trace_id, (span_id,) = world.trace(world.alice)
    world.service.record(world.alice, body(trace_id, kind="thumbs", value=-1, comment="wrong city"))
    world.service.record(world.engineer, body(trace_id, kind="number", name="helpfulness", value=0.25))
    world.service.record(world.engineer, body(trace_id, kind="label", label="off-topic", span_id=span_id))
    world.service.record(world.alice, body(trace_id, kind="comment", comment="too long"))
    correction = {"role": "assistant", "content": "Paris"}
    world.service.record(world.engineer, body(trace_id, kind="correction", corrected_output=correction))

    scores = world.service.list_for_trace(world.engineer.project_id, trace_id)

    assert [(s.kind, s.name) for s in scores] == [
        ("thumbs", "thumbs"),
        ("number", "helpfulness"),
        ("label", "label"),
        ("comment", "comment"),
        ("correction", "correction"),
    ]
    assert scores[0].comment == "wrong city"
    assert scores[1].value == 0.25
    assert (scores[2].label, scores[2].span_id) == ("off-topic", span_id)
    assert scores[3].comment == "too long"
    assert scores[4].corrected_output == correction
    assert [s.author for s in scores] == ["alice", "eve", "eve", "alice", "eve"]


def test_an_engineer_records_an_evaluator_score_under_its_name(world: World) -> None:
    trace_id, _ = world.trace(world.alice)
    score = world.service.record(
        world.engineer,
        body(trace_id, kind="number", name="judge", value=4, source="evaluator", author="rubric-judge"),
    )
    assert (score.source, score.author, score.value) == ("evaluator", "rubric-judge", 4.0)


def test_a_consumer_may_not_write_under_another_author(world: World) -> None:
    trace_id, _ = world.trace(world.alice)
    with pytest.raises(PermissionDenied):
        world.service.record(world.alice, body(trace_id, kind="thumbs", value=1, author="eve"))
    assert world.service.list_for_trace(world.engineer.project_id, trace_id) == []


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "thumbs"}, "value"),
        ({"kind": "thumbs", "value": 0}, "value"),
        ({"kind": "thumbs", "value": 5}, "value"),
        ({"kind": "thumbs", "value": "1"}, "value"),
        ({"kind": "number"}, "value"),
        ({"kind": "number", "value": True}, "value"),
        ({"kind": "number", "value": "5"}, "value"),
        ({"kind": "number", "value": float("nan")}, "value"),
        ({"kind": "label", "value": 1}, "label"),
        ({"kind": "comment"}, "comment"),
        ({"kind": "correction", "comment": "better"}, "corrected_output"),
        ({"kind": "correction", "corrected_output": None}, "corrected_output"),
        ({"kind": "stars", "value": 5}, "kind"),
        ({"kind": "thumbs", "value": 1, "mood": "happy"}, "mood"),
        ({"kind": "thumbs", "value": 1, "source": "robot"}, "source"),
        ({"kind": "comment", "comment": "x", "span_id": "not/hex"}, "span_id"),
    ],
)
def test_what_each_kind_needs_is_checked(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        body("0" * 32, **fields)
    errors = caught.value.errors()
    if field == "kind":
        assert [e["type"] for e in errors] == ["union_tag_invalid"]
    else:
        assert all(e["loc"][0] == fields["kind"] and field in e["loc"] for e in errors), errors


# --- visibility -------------------------------------------------------------------------------


def test_unknown_trace_is_404(world: World) -> None:
    with pytest.raises(NotFound):
        world.service.record(world.engineer, body(new_trace_id(), kind="thumbs", value=1))
    with pytest.raises(NotFound):
        world.service.list_for_trace(world.engineer.project_id, new_trace_id())


def test_unknown_span_of_a_known_trace_is_404(world: World) -> None:
    trace_id, _ = world.trace(world.engineer)
    with pytest.raises(NotFound):
        world.service.record(world.engineer, body(trace_id, span_id=new_span_id(), kind="thumbs", value=1))


def test_another_projects_trace_is_invisible(world: World) -> None:
    trace_id, _ = world.trace(world.alice)
    with pytest.raises(NotFound):
        world.service.record(world.outsider, body(trace_id, kind="thumbs", value=-1))
    with pytest.raises(NotFound):
        world.service.list_for_trace(world.outsider.project_id, trace_id)
    # And the other way round: scores stay in their project.
    world.service.record(world.engineer, body(trace_id, kind="thumbs", value=1))
    theirs, _ = world.trace(world.outsider)
    world.service.record(world.outsider, body(theirs, kind="thumbs", value=-1))
    assert [s.value for s in world.service.list_for_trace(world.engineer.project_id, trace_id)] == [1.0]
    assert [s.value for s in world.service.list_for_trace(world.outsider.project_id, theirs)] == [-1.0]


def test_a_consumer_scores_only_traces_of_their_own_user(world: World) -> None:
    alices, _ = world.trace(world.alice)
    bobs, _ = world.trace(world.bob)
    engineers, _ = world.trace(world.engineer)
    world.service.record(world.alice, body(alices, kind="thumbs", value=1))
    for trace_id in (bobs, engineers):
        with pytest.raises(NotFound):
            world.service.record(world.alice, body(trace_id, kind="thumbs", value=1))
    # Engineers score any trace of their project.
    for trace_id in (alices, bobs):
        world.service.record(world.engineer, body(trace_id, kind="number", value=3))
    assert world.service.list_for_trace(world.engineer.project_id, bobs)[0].author == "eve"


def test_a_consumer_owns_calls_made_with_another_of_their_keys_or_naming_them(world: World) -> None:
    laptop = world.key("alice", Role.consumer)
    # Made with alice's other key, though the request named an end user of its own.
    by_key, _ = world.trace(laptop, user="customer-42")
    # Made with bob's key on behalf of alice (`user: "alice"` in the request).
    by_name, _ = world.trace(world.bob, user="alice")
    for trace_id in (by_key, by_name):
        score = world.service.record(world.alice, body(trace_id, kind="thumbs", value=True))
        assert score.author == "alice"
    with pytest.raises(NotFound):  # bob's call for alice's customer is not bob's to score either
        world.service.record(world.bob, body(by_key, kind="thumbs", value=1))


def test_a_trace_still_in_the_writer_queue_is_waited_for(world: World) -> None:
    """Thumbs given right after the answer: the span may not be written yet."""
    tracer = world.platform.tracer

    async def go() -> Score:
        tracer.start()
        try:
            record = CallRecord(principal=world.alice, model="small")
            tracer.record(record.row())
            assert tracer.pending == 1
            return await asyncio.to_thread(
                world.service.record, world.alice, body(record.trace_id, kind="thumbs", value=1)
            )
        finally:
            await tracer.close()

    score = asyncio.run(go())
    assert tracer.written == 1
    assert world.service.list_for_trace(world.alice.project_id, score.trace_id)[0].id == score.id
