"""Assistants on both backends: publish (create, replace, unchanged), who sees and may choose one, the
refusals (a disabled endpoint, a user who is not a member or is disabled), and the usage figures read
from the endpoint's traces, thumbs and evaluator scores over a window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fmops.assistants import AssistantService, AssistantSpec, Choice
from fmops.assistants.service import PREFIX
from fmops.assistants.usage import usage
from fmops.auth import AuthService, Principal, Role
from fmops.endpoints.schemas import validated
from fmops.errors import NotFound, UserError
from fmops.store import Store, new_id
from fmops.store.models import Conversation, Endpoint, Score, Span, User


@dataclass
class World:
    store: Store
    auth: AuthService
    service: AssistantService
    project: str
    consumer: Principal  # carol
    annotator: Principal  # nina
    engineer: Principal  # erin

    def key(self, user: str, role: Role) -> Principal:
        _, plaintext = self.auth.create_key(
            name=f"{user}-{new_id()[:8]}", role=role, creator=None, project="default", user=user
        )
        return self.auth.authenticate(plaintext)


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    auth = AuthService(store, cache_seconds=0)
    auth.bootstrap(tmp_path / "admin.key")
    with store.session() as session:
        project = auth.project_by_name(session, "default").id
    other = auth.create_project("other").id
    for name, role in (("carol", Role.consumer), ("nina", Role.annotator), ("erin", Role.engineer)):
        auth.create_user(name, role=role, project_id=project)
    auth.create_user("olga", role=Role.consumer, project_id=other)  # a member elsewhere only
    auth.create_user("dave", role=Role.consumer, project_id=project)
    with store.write() as session:
        session.query(User).filter(User.name == "dave").update({"disabled": True})
        for name, enabled in (("support-bot", True), ("retired", False)):
            session.add(Endpoint(project_id=project, name=name, config={}, enabled=enabled))
    w = World(store, auth, AssistantService(store), project, *([None] * 3))  # type: ignore[arg-type]
    w.consumer, w.annotator, w.engineer = (
        w.key("carol", Role.consumer),
        w.key("nina", Role.annotator),
        w.key("erin", Role.engineer),
    )
    return w


def spec(**changes: Any) -> AssistantSpec:
    data = {
        "name": "Support helper",
        "endpoint": "support-bot",
        "description": "Answers questions about orders.",
        "starters": ["Where is my order?", "How do I return an item?"],
        "roles": ["consumer"],
        **changes,
    }
    return validated(AssistantSpec, data)


def test_publish_creates_replaces_and_says_when_nothing_changed(world: World) -> None:
    change, view = world.service.publish(world.project, spec(), actor="erin")
    assert change == "created"
    assert (view.name, view.endpoint, view.starters) == (
        "Support helper",
        "support-bot",
        ("Where is my order?", "How do I return an item?"),
    )
    assert world.service.publish(world.project, spec(), actor="erin")[0] == "unchanged"
    change, view = world.service.publish(world.project, spec(starters=["Hi"]), actor="ed")
    assert (change, view.starters, view.created_by, view.updated_by) == ("updated", ("Hi",), "erin", "ed")
    assert [v.name for v in world.service.list(world.project)] == ["Support helper"]
    assert world.service.unpublish(world.project, "Support helper").name == "Support helper"
    assert world.service.list(world.project) == []
    with pytest.raises(NotFound, match="no assistant named 'Support helper'"):
        world.service.unpublish(world.project, "Support helper")


def test_who_sees_an_assistant_and_may_choose_it(world: World) -> None:
    world.service.publish(world.project, spec(name="everyone"), actor="erin")
    world.service.publish(world.project, spec(name="annotators", roles=["annotator"]), actor="erin")
    world.service.publish(world.project, spec(name="for-carol", roles=[], users=["carol"]), actor="erin")
    world.service.publish(world.project, spec(name="engineers", roles=["engineer"]), actor="erin")

    def names(p: Principal) -> list[str]:
        return [v.name for v in world.service.usable(p)]

    assert names(world.consumer) == ["everyone", "for-carol"]
    assert names(world.annotator) == ["annotators", "everyone"]  # a role covers those below it
    assert names(world.engineer) == ["annotators", "engineers", "everyone", "for-carol"]  # they publish them

    assert world.service.choose(world.consumer, f"{PREFIX}for-carol") == Choice("support-bot", "for-carol")
    assert world.service.choose(world.consumer, "smollm2") == Choice("smollm2")  # a model, as before
    for hidden in ("engineers", "annotators", "nope"):
        with pytest.raises(NotFound, match=f"no assistant named '{hidden}' is available to you"):
            world.service.choose(world.consumer, f"{PREFIX}{hidden}")


@pytest.mark.parametrize(
    ("changes", "message", "param"),
    [
        ({"endpoint": "nowhere"}, "endpoint 'nowhere' does not exist in this project", "endpoint"),
        (
            {"endpoint": "retired", "roles": ["annotator"]},
            "endpoint 'retired' is disabled, so no one can call it (role annotator included); enable it",
            "endpoint",
        ),
        (
            {"users": ["carol", "olga"]},
            "users.1: 'olga' is not a member of this project, so they cannot call endpoint 'support-bot'",
            "users.1",
        ),
        ({"users": ["ghost"]}, "users.0: 'ghost' is not a member of this project", "users.0"),
        ({"users": ["dave"]}, "users.0: 'dave' is disabled, so they cannot call endpoint", "users.0"),
    ],
)
def test_publishing_to_someone_who_cannot_call_the_endpoint_is_refused(
    world: World, changes: dict[str, Any], message: str, param: str
) -> None:
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        world.service.publish(world.project, spec(**changes), actor="erin")
    assert refused.value.param == param
    assert world.service.list(world.project) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"roles": [], "users": []}, "say who may use it: roles"),
        ({"roles": ["guest"]}, "roles.0: Input should be 'consumer', 'annotator', 'engineer' or 'admin'"),
        ({"name": " padded"}, "name: String should match pattern"),
        ({"starters": ["x" * 201]}, "starters.0: String should have at most 200 characters"),
        ({"starters": ["a", "b", "c", "d", "e", "f", "g"]}, "starters: List should have at most 6 items"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_a_bad_spec_says_what_to_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        spec(**changes)


def _conversation(world: World, user: Principal, assistant: str | None) -> str:
    with world.store.write() as session:
        row = Conversation(project_id=world.project, user_id=user.user_id, title="t", endpoint="support-bot")
        session.add(row)
        session.flush()
        conversation_id = row.id
    world.service.remember(user, conversation_id, Choice("support-bot", assistant))
    return conversation_id


def _answer(
    world: World,
    conversation: str,
    user: str,
    at: datetime,
    *,
    status: str = "ok",
    endpoint: str = "support-bot",
) -> str:
    trace_id = new_id()
    with world.store.write() as session:
        session.add(
            Span(
                span_id=new_id()[:16],
                trace_id=trace_id,
                project_id=world.project,
                name="chat",
                start_time=at,
                end_time=at,
                status=status,
                endpoint=endpoint,
                user=user,
                session_id=conversation,
                input=[],
                output=None,
                attributes={},
            )
        )
    return trace_id


def _score(world: World, trace_id: str, **fields: Any) -> None:
    with world.store.write() as session:
        session.add(Score(project_id=world.project, trace_id=trace_id, **fields))


def test_usage_counts_the_assistants_conversations_feedback_and_scores(world: World) -> None:
    world.service.publish(world.project, spec(name="helper"), actor="erin")
    now = datetime.now(UTC)
    a = _conversation(world, world.consumer, "helper")
    b = _conversation(world, world.annotator, "helper")
    plain = _conversation(world, world.consumer, None)  # the endpoint, not through the assistant
    t1 = _answer(world, a, "carol", now - timedelta(hours=2))
    t2 = _answer(world, a, "carol", now - timedelta(minutes=50), status="error")
    t3 = _answer(world, b, "nina", now - timedelta(minutes=5))
    _answer(world, a, "carol", now - timedelta(days=9))  # before the window
    _answer(world, plain, "carol", now - timedelta(hours=1))
    _answer(world, a, "carol", now - timedelta(hours=1), endpoint="other")  # switched away meanwhile
    thumbs = {"kind": "thumbs", "name": "thumbs", "source": "human"}
    _score(world, t1, value=-1, author="carol", **thumbs)
    _score(world, t1, value=1, author="carol", **thumbs)  # changed her mind: one thumb up
    _score(world, t3, value=-1, author="nina", **thumbs)
    judged = {"kind": "number", "source": "evaluator"}
    _score(world, t1, name="helpful", value=0.5, author="judge", **judged)
    _score(world, t3, name="helpful", value=1.0, author="judge", **judged)
    _score(world, t2, name="is-json", value=0.0, author="rule", **judged)
    _score(world, t2, name="helpful", value=0.25, author="carol", kind="number", source="human")

    seen = usage(world.store, world.project, "helper", "support-bot", until=now)
    assert (seen.conversations, seen.answers, seen.users, seen.errors) == (2, 3, 2, 1)
    assert (seen.thumbs_up, seen.thumbs_down) == (1, 1)
    assert seen.rated_share == pytest.approx(2 / 3)
    assert seen.up_share == pytest.approx(0.5)
    assert [(s.name, s.mean, s.n) for s in seen.scores] == [("helpful", 0.75, 2), ("is-json", 0.0, 1)]
    last_hour = usage(world.store, world.project, "helper", "support-bot", span=timedelta(hours=1), until=now)
    assert (last_hour.answers, last_hour.conversations, last_hour.rated_share) == (2, 2, 0.5)
    empty = usage(world.store, world.project, "nobody", "support-bot", until=now)
    assert (empty.answers, empty.rated_share, empty.up_share, empty.scores) == (0, None, None, ())


def test_a_conversation_remembers_its_assistant_until_it_talks_to_another(world: World) -> None:
    world.service.publish(world.project, spec(name="helper"), actor="erin")
    world.service.publish(world.project, spec(name="other"), actor="erin")
    c = _conversation(world, world.consumer, "helper")
    assert world.service.of_conversations(world.project, [c]) == {c: "helper"}
    world.service.remember(world.consumer, c, Choice("support-bot", "other"))
    assert world.service.of_conversations(world.project, [c, "x"]) == {c: "other"}
    world.service.remember(world.consumer, c, Choice("smollm2"))
    assert world.service.of_conversations(world.project, [c]) == {}
