"""Conversations as trees, on both backends: regenerated answers and edited questions are kept as
versions, the branch shown is what the model is sent and what continues, search and export see only
the caller's own, parameters are remembered, and linear conversations migrate to a chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from alembic import command
from sqlalchemy import text

from fmops.auth import AuthService, Principal, Role
from fmops.conversations import ConversationService
from fmops.conversations.export import exported, to_markdown
from fmops.errors import NotFound, UserError
from fmops.store import Store, new_id, upgrade
from fmops.store.migrate import _config


@dataclass
class People:
    service: ConversationService
    alice: Principal
    bob: Principal


@pytest.fixture
def people(store: Store, tmp_path: Path) -> People:
    auth = AuthService(store, cache_seconds=0)
    auth.bootstrap(tmp_path / "admin.key")
    with store.session() as session:
        default = auth.project_by_name(session, "default").id

    def key(user: str) -> Principal:
        auth.create_user(user, role=Role.consumer, project_id=default)
        _, plaintext = auth.create_key(
            name=f"{user}-key", role=Role.consumer, creator=None, project="default", user=user
        )
        return auth.authenticate(plaintext)

    return People(ConversationService(store), key("alice"), key("bob"))


def contents(service: ConversationService, who: Principal, conversation_id: str) -> list[str]:
    return [m.content for m in service.messages(who, conversation_id)]


def sent(
    service: ConversationService, who: Principal, conversation_id: str, until: str | None = None
) -> list[str]:
    history = service.history(who, conversation_id, max_messages=100, max_chars=100_000, until=until)
    return [m["content"] for m in history]


def test_a_regenerated_answer_is_a_version_and_the_branch_shown_continues(people: People) -> None:
    s, alice = people.service, people.alice
    c = s.create(alice, "m")
    q1 = s.append(alice, c.id, "user", "What is 2+2?")
    a1 = s.append(alice, c.id, "assistant", "5", parent_id=q1.id)
    assert (a1.version, a1.versions, a1.parent_id) == (1, 1, q1.id)

    asked = s.question(alice, c.id, a1.id)
    assert asked.id == q1.id
    assert sent(s, alice, c.id, until=asked.id) == ["What is 2+2?"]  # the old answer is not sent again
    a2 = s.append(
        alice, c.id, "assistant", "4", parent_id=asked.id, endpoint="m", prompt_name="p", prompt_version=3
    )
    assert (a2.version, a2.versions, a2.previous_id, a2.next_id) == (2, 2, a1.id, None)

    shown = s.messages(alice, c.id)
    assert [m.content for m in shown] == ["What is 2+2?", "4"]
    assert (shown[1].endpoint, shown[1].prompt_name, shown[1].prompt_version) == ("m", "p", 3)
    # The next message follows the answer shown, and the model is sent that branch.
    s.append(alice, c.id, "user", "And 3+3?")
    assert sent(s, alice, c.id) == ["What is 2+2?", "4", "And 3+3?"]

    # Back to the first answer: the branch through it is shown (it has no continuation), and continues.
    s.show(alice, c.id, a1.id)
    assert contents(s, alice, c.id) == ["What is 2+2?", "5"]
    first = s.messages(alice, c.id)[1]
    assert (first.version, first.versions, first.next_id) == (1, 2, a2.id)
    s.append(alice, c.id, "user", "Sure?")
    assert sent(s, alice, c.id) == ["What is 2+2?", "5", "Sure?"]
    # And forward again: the newest branch through the second answer, its follow-up included.
    s.show(alice, c.id, a2.id)
    assert contents(s, alice, c.id) == ["What is 2+2?", "4", "And 3+3?"]


def test_an_edited_question_branches_and_keeps_the_old_branch(people: People) -> None:
    s, alice = people.service, people.alice
    c = s.create(alice, "m")
    q1 = s.append(alice, c.id, "user", "Name a colour")
    s.append(alice, c.id, "assistant", "red", parent_id=q1.id)
    q2 = s.append(alice, c.id, "user", "Another?")
    s.append(alice, c.id, "assistant", "blue", parent_id=q2.id)

    edited = s.edit(alice, c.id, q1.id, "Name a fruit")
    assert (edited.parent_id, edited.version, edited.versions, edited.previous_id) == (None, 2, 2, q1.id)
    assert sent(s, alice, c.id, until=edited.id) == ["Name a fruit"]  # nothing of the old branch
    s.append(alice, c.id, "assistant", "apple", parent_id=edited.id)
    assert contents(s, alice, c.id) == ["Name a fruit", "apple"]
    assert s.get(alice, c.id).title == "Name a colour"  # the title stays the first message's

    s.show(alice, c.id, q1.id)  # the old branch, whole
    assert contents(s, alice, c.id) == ["Name a colour", "red", "Another?", "blue"]

    # A later message edited: its version follows the same answer.
    later = s.edit(alice, c.id, q2.id, "One more?")
    assert later.parent_id == q2.parent_id
    assert contents(s, alice, c.id) == ["Name a colour", "red", "One more?"]

    with pytest.raises(UserError, match="only your own messages"):
        s.edit(alice, c.id, s.messages(alice, c.id)[1].id, "I said so")
    with pytest.raises(UserError, match="only an answer"):
        s.question(alice, c.id, q1.id)


def test_editing_in_a_deleted_or_anothers_conversation_is_not_found(people: People) -> None:
    s, alice, bob = people.service, people.alice, people.bob
    c = s.create(alice, "m")
    q = s.append(alice, c.id, "user", "hello")
    a = s.append(alice, c.id, "assistant", "hi", parent_id=q.id)
    for attempt in (
        lambda: s.edit(bob, c.id, q.id, "mine"),
        lambda: s.question(bob, c.id, a.id),
        lambda: s.show(bob, c.id, a.id),
        lambda: s.export(bob, c.id),
        lambda: s.set_params(bob, c.id, {"temperature": 1}),
        lambda: s.history(bob, c.id, max_messages=5, max_chars=100),
    ):
        with pytest.raises(NotFound):
            attempt()
    other = s.create(alice, "m")
    with pytest.raises(NotFound, match="no longer in this conversation"):
        s.edit(alice, other.id, q.id, "moved")  # a message of another conversation
    with pytest.raises(NotFound, match="no longer in this conversation"):
        s.append(alice, other.id, "assistant", "x", parent_id=a.id)
    s.delete(alice, c.id)
    with pytest.raises(NotFound, match="no such conversation"):
        s.edit(alice, c.id, q.id, "edited after the other tab deleted it")


def test_parameters_are_remembered_per_conversation(people: People) -> None:
    s, alice = people.service, people.alice
    c = s.create(alice, "m")
    assert s.get(alice, c.id).params == {}
    assert s.set_params(alice, c.id, {"temperature": 0.3, "max_tokens": 64}).params == {
        "temperature": 0.3,
        "max_tokens": 64,
    }
    assert s.set_params(alice, c.id, {"max_tokens": None}).params == {"temperature": 0.3}  # forgotten
    assert s.get(alice, c.id).params == {"temperature": 0.3}
    assert s.get(alice, s.create(alice, "m").id).params == {}  # another conversation: its own
    for bad in (
        {"temperature": 3},
        {"max_tokens": 0},
        {"max_tokens": 1.5},
        {"top_k": 3},
        {"temperature": True},
    ):
        with pytest.raises(UserError):
            s.set_params(alice, c.id, bad)


def test_search_finds_titles_and_messages_of_the_callers_own_only(people: People) -> None:
    s, alice, bob = people.service, people.alice, people.bob
    trip = s.create(alice, "m", title="Trip to Lisbon")
    recipe = s.create(alice, "m")
    s.append(alice, recipe.id, "user", "How long do I bake a 100% rye loaf_with seeds?")
    q = s.append(alice, recipe.id, "assistant", "About an hour at 230 °C.")
    s.edit(alice, recipe.id, q.parent_id or "", "Sourdough timing?")  # the old text is still searched
    bobs = s.create(bob, "m", title="Lisbon for bob")
    s.append(bob, bobs.id, "user", "rye bread")

    assert [f.conversation.id for f in s.search(alice, "lisbon")] == [trip.id]
    found = s.search(alice, "RYE")
    assert [f.conversation.id for f in found] == [recipe.id]
    assert found[0].snippet is not None
    assert "rye loaf" in found[0].snippet
    assert [f.conversation.id for f in s.search(alice, "100%")] == [recipe.id]  # % is a character
    assert s.search(alice, "1_0") == []  # and _ too
    assert [f.conversation.id for f in s.search(alice, "loaf_with")] == [recipe.id]
    assert [f.conversation.id for f in s.search(alice, "an hour")] == [recipe.id]  # an answer's text
    assert s.search(alice, "bob") == []
    assert [f.conversation.id for f in s.search(bob, "lisbon")] == [bobs.id]
    for bad in ("   ", "x" * 201):
        with pytest.raises(UserError):
            s.search(alice, bad)


def test_export_has_the_branch_shown_in_markdown_and_every_branch_in_json(people: People) -> None:
    s, alice = people.service, people.alice
    c = s.create(alice, "ep", title="Rye / bread: notes")
    q = s.append(alice, c.id, "user", "Bake time?")
    old = s.append(alice, c.id, "assistant", "Two days.", parent_id=q.id, endpoint="ep", model="m1")
    s.append(
        alice, c.id, "assistant", "About an hour.", parent_id=q.id, endpoint="ep", model="m1",
        prompt_name="baker", prompt_version=2,
    )  # fmt: skip
    s.set_params(alice, c.id, {"temperature": 0.2})

    body, media_type, name = exported(s, alice, c.id, "md")
    markdown = body.decode()
    assert media_type.startswith("text/markdown")
    assert name.endswith(".md")
    assert "/" not in name
    assert " " not in name
    assert markdown.startswith("# Rye / bread: notes")
    assert "## You" in markdown
    assert "Bake time?" in markdown
    assert "## ep · model m1 · prompt baker v2 (version 2 of 2)" in markdown
    assert "About an hour." in markdown
    assert "Two days." not in markdown

    body, media_type, name = exported(s, alice, c.id, "json")
    data = orjson.loads(body)
    assert media_type == "application/json"
    assert name.endswith(".json")
    assert data["title"] == "Rye / bread: notes"
    assert data["params"] == {"temperature": 0.2}
    assert [m["content"] for m in data["messages"]] == ["Bake time?", "Two days.", "About an hour."]
    assert data["messages"][1]["parent_id"] == q.id
    assert data["shown"] == [q.id, data["messages"][2]["id"]]
    assert old.id not in data["shown"]
    assert data["messages"][2]["prompt_version"] == 2
    conversation, messages, shown = s.export(alice, c.id)
    assert to_markdown(conversation, messages, shown) == exported(s, alice, c.id, "md")[0]


def test_linear_conversations_migrate_to_a_chain(people: People, store: Store) -> None:
    s, alice = people.service, people.alice
    c = s.create(alice, "m")
    with store.engine.begin() as conn:
        command.downgrade(_config(conn), "0019")
    # Written before branches existed: numbered messages, no parents.
    with store.engine.begin() as conn:
        for seq, (role, content) in enumerate([("user", "one"), ("assistant", "two"), ("user", "three")], 1):
            conn.execute(
                text(
                    "INSERT INTO conversation_messages (id, conversation_id, seq, role, content, created_at)"
                    " VALUES (:id, :c, :seq, :role, :content, CURRENT_TIMESTAMP)"
                ),
                {"id": new_id(), "c": c.id, "seq": seq, "role": role, "content": content},
            )
    upgrade(store)
    shown = s.messages(alice, c.id)
    assert [m.content for m in shown] == ["one", "two", "three"]
    assert [m.parent_id for m in shown] == [None, shown[0].id, shown[1].id]
    assert all(m.versions == 1 for m in shown)
    s.append(alice, c.id, "assistant", "four")  # continues the chain
    assert sent(s, alice, c.id) == ["one", "two", "three", "four"]
