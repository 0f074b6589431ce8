"""Chat conversations on both backends: ownership, ordering, messages, history bounds, feedback, usage."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fmops.auth import AuthService, Principal, Role
from fmops.conversations import ConversationService
from fmops.conversations.service import MESSAGE_MAX_CHARS, NEW_TITLE, TITLE_MAX
from fmops.conversations.usage import usage
from fmops.errors import NotFound, UserError
from fmops.gateway.spend import key_scope, project_scope
from fmops.store import Store, new_id
from fmops.store.models import Score, Spend


@dataclass
class World:
    store: Store
    auth: AuthService
    service: ConversationService
    alice: Principal
    bob: Principal
    alice_elsewhere: Principal  # the same user, in another project

    def key(self, user: str, project: str = "default") -> Principal:
        _, plaintext = self.auth.create_key(
            name=f"{user}-{new_id()[:8]}", role=Role.consumer, creator=None, project=project, user=user
        )
        return self.auth.authenticate(plaintext)


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    auth = AuthService(store, cache_seconds=0)
    auth.bootstrap(tmp_path / "admin.key")
    with store.session() as session:
        default = auth.project_by_name(session, "default").id
    other = auth.create_project("other").id
    auth.create_user("alice", role=Role.consumer, project_id=default)
    auth.create_user("alice", role=Role.consumer, project_id=other)  # the same user, a second project
    auth.create_user("bob", role=Role.consumer, project_id=default)
    w = World(store, auth, ConversationService(store), *([None] * 3))  # type: ignore[arg-type]
    w.alice, w.bob, w.alice_elsewhere = w.key("alice"), w.key("bob"), w.key("alice", "other")
    return w


def test_a_conversation_is_private_to_its_user(world: World) -> None:
    mine = world.service.create(world.alice, "smollm2-135m-instruct")
    world.service.append(world.alice, mine.id, "user", "hello")

    assert [c.id for c in world.service.listing(world.alice).items] == [mine.id]
    assert world.service.listing(world.bob).items == []
    for attempt in (
        lambda: world.service.get(world.bob, mine.id),
        lambda: world.service.messages(world.bob, mine.id),
        lambda: world.service.rename(world.bob, mine.id, "taken"),
        lambda: world.service.delete(world.bob, mine.id),
        lambda: world.service.append(world.bob, mine.id, "user", "hi"),
        lambda: world.service.set_endpoint(world.bob, mine.id, "other"),
    ):
        with pytest.raises(NotFound):
            attempt()
    message = world.service.messages(world.alice, mine.id)[0]
    with pytest.raises(NotFound):
        world.service.message(world.bob, message.id)
    # Nothing changed for its owner.
    assert world.service.get(world.alice, mine.id).title == "hello"
    assert len(world.service.messages(world.alice, mine.id)) == 1


def test_a_conversation_belongs_to_its_project(world: World) -> None:
    mine = world.service.create(world.alice, "m")
    assert world.service.listing(world.alice_elsewhere).items == []
    with pytest.raises(NotFound):
        world.service.get(world.alice_elsewhere, mine.id)


@pytest.mark.parametrize("bad_id", ["", "x" * 40, "nul\x00id", "\ud800", "../etc"])
def test_odd_ids_are_not_found(world: World, bad_id: str) -> None:
    with pytest.raises(NotFound):
        world.service.get(world.alice, bad_id)
    with pytest.raises(NotFound):
        world.service.message(world.alice, bad_id)


def test_list_is_newest_activity_first_and_paginated(world: World) -> None:
    made = [world.service.create(world.alice, "m", title=f"chat {i}") for i in range(5)]
    world.service.append(world.alice, made[1].id, "user", "bring me to the top")

    first = world.service.listing(world.alice, limit=2)
    second = world.service.listing(world.alice, offset=first.next_offset or 0, limit=2)
    last = world.service.listing(world.alice, offset=second.next_offset or 0, limit=2)

    order = [c.title for page in (first, second, last) for c in page.items]
    assert order == ["chat 1", "chat 4", "chat 3", "chat 2", "chat 0"]
    assert (first.next_offset, second.next_offset, last.next_offset) == (2, 4, None)


def test_title_comes_from_the_first_message_and_can_be_renamed(world: World) -> None:
    c = world.service.create(world.alice, "m")
    assert c.title == NEW_TITLE
    world.service.append(
        world.alice, c.id, "user", "  What is\nthe capital of France and why is it Paris? " * 3
    )
    title = world.service.get(world.alice, c.id).title
    assert title.startswith("What is the capital of France")
    assert title.endswith("…")
    assert len(title) <= 60
    world.service.append(world.alice, c.id, "user", "second message")
    assert world.service.get(world.alice, c.id).title == title  # only the first message names it

    assert world.service.rename(world.alice, c.id, "  Trip\tto   Paris ").title == "Trip to Paris"
    for bad in ("", "   ", "x" * (TITLE_MAX + 1)):
        with pytest.raises(UserError):
            world.service.rename(world.alice, c.id, bad)
    assert world.service.get(world.alice, c.id).title == "Trip to Paris"


def test_messages_are_numbered_kept_and_deleted_with_the_conversation(world: World) -> None:
    c = world.service.create(world.alice, "m")
    world.service.append(world.alice, c.id, "user", "hi\x00 there")  # NUL: PostgreSQL refuses it
    world.service.append(
        world.alice, c.id, "assistant", "partial", trace_id="t" * 32, model="m", error="upstream failed"
    )
    shown = world.service.messages(world.alice, c.id)
    assert [(m.seq, m.role, m.content) for m in shown] == [
        (1, "user", "hi there"),
        (2, "assistant", "partial"),
    ]
    assert (shown[1].trace_id, shown[1].model, shown[1].error) == ("t" * 32, "m", "upstream failed")
    assert world.service.message(world.alice, shown[1].id) == shown[1]

    world.service.delete(world.alice, c.id)
    with pytest.raises(NotFound):
        world.service.get(world.alice, c.id)
    with pytest.raises(NotFound):
        world.service.message(world.alice, shown[0].id)


def test_a_person_cannot_send_an_empty_or_huge_message(world: World) -> None:
    c = world.service.create(world.alice, "m")
    with pytest.raises(UserError, match="write a message"):
        world.service.append(world.alice, c.id, "user", " \n ")
    with pytest.raises(UserError, match="at most"):
        world.service.append(world.alice, c.id, "user", "x" * (MESSAGE_MAX_CHARS + 1))
    with pytest.raises(UserError):
        world.service.create(world.alice, "  ")
    assert world.service.messages(world.alice, c.id) == []


def test_concurrent_appends_get_distinct_numbers(world: World) -> None:
    c = world.service.create(world.alice, "m")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(5):
                world.service.append(world.alice, c.id, "user", f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [m.seq for m in world.service.messages(world.alice, c.id)] == list(range(1, 31))


def test_history_is_the_newest_messages_within_bounds(world: World) -> None:
    c = world.service.create(world.alice, "m")
    for i in range(6):
        world.service.append(world.alice, c.id, "user", f"question {i} " + "q" * 80)
        world.service.append(world.alice, c.id, "assistant", f"answer {i} " + "a" * 80)
    world.service.append(world.alice, c.id, "assistant", "", error="the model failed")  # never said
    world.service.append(world.alice, c.id, "user", "last question")

    by_count = world.service.history(world.alice, c.id, max_messages=4, max_chars=100_000)
    assert [m["content"][:10] for m in by_count] == [
        "question 5",
        "answer 5 a",
        "last quest",
    ]  # starts with user
    by_chars = world.service.history(world.alice, c.id, max_messages=100, max_chars=400)
    assert sum(len(m["content"]) for m in by_chars) <= 400
    assert by_chars[0]["role"] == "user"
    assert by_chars[-1]["content"] == "last question"
    alone = world.service.history(world.alice, c.id, max_messages=100, max_chars=5)
    assert alone == [{"role": "user", "content": "last question"}]  # the newest always goes


def test_feedback_is_the_callers_latest_of_each_kind(world: World) -> None:
    trace, other_trace = "a" * 32, "b" * 32

    def score(author: str, kind: str, **fields: object) -> Score:
        return Score(
            project_id=world.alice.project_id,
            trace_id=fields.pop("trace_id", trace),
            name=kind,
            kind=kind,
            source=fields.pop("source", "human"),
            author=author,
            **fields,
        )

    with world.store.session() as session:
        session.add_all(
            [
                score("alice", "thumbs", value=1.0),
                score("alice", "comment", comment="too short"),
                score("alice", "correction", corrected_output={"role": "assistant", "content": "Paris."}),
                score("bob", "thumbs", value=1.0, trace_id=other_trace),
                score("alice", "number", value=0.2, source="evaluator", trace_id=other_trace),
            ]
        )
    with world.store.session() as session:
        session.add(score("alice", "thumbs", value=-1.0))  # changed their mind, later
    found = world.service.feedback(world.alice, [trace, other_trace, ""])
    assert set(found) == {trace}
    assert (found[trace].thumbs, found[trace].comment, found[trace].correction) == (-1, "too short", "Paris.")
    assert world.service.feedback(world.alice, []) == {}


def test_usage_reads_the_spend_of_the_current_period(world: World) -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    alice = world.alice
    with world.store.session() as session:
        session.add_all(
            [
                Spend(
                    scope=key_scope(alice.key_id),
                    period="2026-11",
                    cost=0.75,
                    input_tokens=100,
                    output_tokens=20,
                    requests=3,
                ),
                Spend(
                    scope=key_scope(alice.key_id),
                    period="2026-10",
                    cost=9.0,
                    input_tokens=1,
                    output_tokens=1,
                    requests=1,
                ),
                Spend(
                    scope=project_scope(alice.project_id),
                    period="2026-11",
                    cost=2.0,
                    input_tokens=500,
                    output_tokens=50,
                    requests=9,
                ),
            ]
        )
    (meter,) = usage(world.store, alice, with_key=True, now=now)
    assert (meter.scope, meter.requests, meter.tokens, meter.cost) == ("key", 3, 120, 0.75)
    assert (meter.budget, meter.percent, meter.exhausted) == (None, None, False)
    assert meter.resets_at == datetime(2026, 12, 1, tzinfo=UTC)

    limited = replace(alice, key_budget=1.0, key_rpm=60, project_budget=2.0, project_budget_period="month")
    key_meter, project_meter = usage(world.store, limited, with_key=True, now=now)
    assert (key_meter.percent, key_meter.exhausted, key_meter.rpm) == (75.0, False, 60)
    assert (project_meter.scope, project_meter.requests, project_meter.exhausted) == ("project", 9, True)

    # A password session acts as no key: the project's meter only.
    (only,) = usage(world.store, alice, with_key=False, now=now)
    assert (only.scope, only.cost) == ("project", 2.0)
    zero = replace(alice, key_budget=0.0)
    assert usage(world.store, zero, with_key=True, now=datetime(2027, 1, 1, tzinfo=UTC))[0].percent == 100.0
