"""Tailoring on both backends: custom instructions and saved prompts are private to their user (404
for anyone else), limited in length, sandboxed (a template escape is refused with its line and
column), marked in what the chat sends, switchable per conversation, shared read-only and promoted
into the prompt registry with their author kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fmops.auth import AuthService, Principal, Role
from fmops.conversations import ConversationService
from fmops.errors import Conflict, NotFound, UserError
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.platform import Platform
from fmops.prompts.service import PromptService
from fmops.prompts.templates import TemplateError
from fmops.store import new_id
from fmops.tailoring import TailoringService
from fmops.tailoring.schemas import INSTRUCTIONS_MAX, PROMPT_MAX, PROMPTS_MAX
from fmops.tailoring.service import INSTRUCTIONS_MARK


@dataclass
class World:
    platform: Platform
    service: TailoringService
    conversations: ConversationService
    alice: Principal
    bob: Principal
    alice_elsewhere: Principal  # the same user, in another project


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    auth: AuthService = platform.auth
    auth.bootstrap(tmp_path / "admin.key")
    with platform.store.session() as session:
        default = auth.project_by_name(session, "default").id
    other = auth.create_project("other").id
    auth.create_user("alice", role=Role.consumer, project_id=default)
    auth.create_user("alice", role=Role.consumer, project_id=other)
    auth.create_user("bob", role=Role.engineer, project_id=default)

    def key(user: str, role: Role, project: str = "default") -> Principal:
        _, plaintext = auth.create_key(
            name=f"{user}-{new_id()[:8]}", role=role, creator=None, project=project, user=user
        )
        return auth.authenticate(plaintext)

    return World(
        platform,
        TailoringService(platform.store),
        ConversationService(platform.store),
        key("alice", Role.consumer),
        key("bob", Role.engineer),
        key("alice", Role.consumer, "other"),
    )


def test_instructions_are_kept_per_user_and_project_and_sent_marked(world: World) -> None:
    s = world.service
    assert s.instructions(world.alice).updated_at is None
    saved = s.set_instructions(world.alice, "I am a nurse in Lyon.", "Answer in two sentences.")
    assert (saved.about, saved.style) == ("I am a nurse in Lyon.", "Answer in two sentences.")
    assert s.instructions(world.alice).about == "I am a nurse in Lyon."
    assert s.instructions(world.bob).about == ""  # another user's are not theirs
    assert s.instructions(world.alice_elsewhere).about == ""  # nor another project's

    chat = world.conversations.create(world.alice, "m")
    sent = s.apply(world.alice, chat.id, [{"role": "user", "content": "hi"}])
    assert [m["role"] for m in sent] == ["system", "user"]
    system = sent[0]["content"]
    assert system.startswith(INSTRUCTIONS_MARK.format(user="alice"))
    assert "I am a nurse in Lyon." in system
    assert "Answer in two sentences." in system
    # bob has none: his messages go as they are
    bobs = world.conversations.create(world.bob, "m")
    assert s.apply(world.bob, bobs.id, [{"role": "user", "content": "hi"}]) == [
        {"role": "user", "content": "hi"}
    ]

    # The gateway request the chat sends gets the same first message.
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    tailored = s.tailor(world.alice, chat.id, request)
    assert tailored.messages[0].role == "system"
    assert tailored.messages[0].content == system
    assert tailored.messages[1].content == "hi"

    # Within a budget, the instructions take their room from the oldest messages (never the newest).
    turns = [
        {"role": "user", "content": "a" * 100},
        {"role": "assistant", "content": "b" * 100},
        {"role": "user", "content": "c" * 100},
    ]
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": turns})
    budget = len(system) + 250
    kept = [m.content for m in s.tailor(world.alice, chat.id, request, budget).messages]
    assert kept == [system, "c" * 100]  # the answer left alone at the start goes too
    kept = [m.content for m in s.tailor(world.alice, chat.id, request, 10).messages]
    assert kept == [system, "c" * 100]
    assert len(s.tailor(world.alice, chat.id, request, 10_000).messages) == 4

    # Both parts empty clears them.
    s.set_instructions(world.alice, "  ", "")
    assert s.instructions(world.alice).updated_at is None
    assert len(s.apply(world.alice, chat.id, [{"role": "user", "content": "hi"}])) == 1


def test_instructions_too_long_are_refused_saying_so(world: World) -> None:
    with pytest.raises(UserError, match="at most 1,500 characters; this has 1,501") as caught:
        world.service.set_instructions(world.alice, "x" * (INSTRUCTIONS_MAX + 1), "")
    assert caught.value.param == "about"
    with pytest.raises(UserError) as caught:
        world.service.set_instructions(world.alice, "", "y" * (INSTRUCTIONS_MAX + 5))
    assert caught.value.param == "style"
    assert world.service.instructions(world.alice).updated_at is None  # nothing half-saved
    # Exactly the limit is fine, and text with a template's braces stays text (never rendered).
    world.service.set_instructions(world.alice, "{{ ''.__class__ }}" + "x" * (INSTRUCTIONS_MAX - 18), "")
    chat = world.conversations.create(world.alice, "m")
    (first,) = world.service.apply(world.alice, chat.id, [])
    assert "{{ ''.__class__ }}" in first["content"]


def test_a_conversation_switches_the_instructions_off_and_another_user_gets_404(world: World) -> None:
    s = world.service
    s.set_instructions(world.alice, "I like cats.", "")
    chat = world.conversations.create(world.alice, "m")
    other = world.conversations.create(world.alice, "m")
    assert s.conversation_instructions(world.alice, chat.id) is True
    assert s.switch_instructions(world.alice, chat.id, False) is False
    assert s.conversation_instructions(world.alice, chat.id) is False
    assert s.apply(world.alice, chat.id, [{"role": "user", "content": "hi"}]) == [
        {"role": "user", "content": "hi"}
    ]
    assert len(s.apply(world.alice, other.id, [{"role": "user", "content": "hi"}])) == 2  # only that one
    s.switch_instructions(world.alice, chat.id, True)
    assert len(s.apply(world.alice, chat.id, [])) == 1
    for attempt in (
        lambda: s.conversation_instructions(world.bob, chat.id),
        lambda: s.switch_instructions(world.bob, chat.id, False),
        lambda: s.switch_instructions(world.alice_elsewhere, chat.id, False),
        lambda: s.switch_instructions(world.alice, "nope\x00", False),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert s.conversation_instructions(world.alice, chat.id) is True


def test_saved_prompts_fill_with_variables_in_the_sandbox(world: World) -> None:
    s = world.service
    view, created = s.save_prompt(
        world.alice, "summarise", "Summarise in {{ words }} words:\n{{ text }}", description="Short summary"
    )
    assert created
    assert view.variables == ["text", "words"]
    assert view.mine
    assert not view.shared
    assert s.fill(world.alice, "summarise", {"words": "10", "text": "{{ 7*7 }}"}) == (
        "Summarise in 10 words:\n{{ 7*7 }}"  # a value is text, never a template
    )
    with pytest.raises(TemplateError, match="missing variables: text"):
        s.fill(world.alice, "summarise", {"words": "10"})
    # Saving under the same name replaces it.
    again, created = s.save_prompt(world.alice, "summarise", "TL;DR: {{ text }}")
    assert not created
    assert again.id == view.id
    assert again.variables == ["text"]
    assert [p.name for p in s.prompts(world.alice)] == ["summarise"]


@pytest.mark.parametrize(
    ("template", "line", "column"),
    [
        ("Hello\n{{ ''.__class__.__mro__ }}", 2, 6),
        ("ok {{ x }}\nand {{ y.__globals__ }}", 2, 9),
        ("{{ broken }", 1, 1),
    ],
)
def test_a_template_escape_or_error_is_refused_with_its_line_and_column(
    world: World, template: str, line: int, column: int
) -> None:
    with pytest.raises(TemplateError) as caught:
        world.service.save_prompt(world.alice, "bad", template)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"line {line}, column {column}" in caught.value.message
    assert world.service.prompts(world.alice) == []


def test_bad_prompts_are_refused_saying_what_to_fix(world: World) -> None:
    s = world.service
    with pytest.raises(UserError, match="at most 8,000 characters"):
        s.save_prompt(world.alice, "long", "x" * (PROMPT_MAX + 1))
    for name in ("Has Caps", "/slash", "", "a" * 65, "dot.ted"):
        with pytest.raises(UserError, match="follows / in the chat") as caught:
            s.save_prompt(world.alice, name, "text")
        assert caught.value.param == "name"
    with pytest.raises(UserError, match="needs text"):
        s.save_prompt(world.alice, "empty", "   ")
    for i in range(PROMPTS_MAX):
        s.save_prompt(world.alice, f"p{i}", "text")
    with pytest.raises(Conflict, match=f"at most {PROMPTS_MAX}"):
        s.save_prompt(world.alice, "one-more", "text")
    s.save_prompt(world.alice, "p0", "replacing one is fine")


def test_an_unknown_name_says_so_and_lists_the_known_ones(world: World) -> None:
    s = world.service
    s.save_prompt(world.alice, "translate", "Translate {{ text }}")
    with pytest.raises(
        NotFound, match=r"no saved prompt named /nope \(yours and the project's: /translate\)"
    ):
        s.fill(world.alice, "nope", {})
    with pytest.raises(NotFound, match="you have none yet"):
        s.fill(world.bob, "nope", {})
    with pytest.raises(NotFound):
        s.fill(world.alice, "BAD NAME\x00", {})


def test_another_users_unshared_prompt_is_404_and_a_shared_one_read_only(world: World) -> None:
    s = world.service
    mine, _ = s.save_prompt(world.alice, "secret", "my secret {{ x }}")
    for attempt in (
        lambda: s.prompt(world.bob, "secret"),
        lambda: s.fill(world.bob, "secret", {"x": "1"}),
        lambda: s.share(world.bob, "secret"),
        lambda: s.delete_prompt(world.bob, "secret"),
        lambda: s.shared_prompt(world.bob, mine.id),
        lambda: s.fill(world.alice_elsewhere, "secret", {"x": "1"}),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert [p.name for p in s.prompts(world.bob)] == []

    shared = s.share(world.alice, "secret")
    assert shared.shared
    (seen,) = s.prompts(world.bob)
    assert (seen.name, seen.author, seen.mine) == ("secret", "alice", False)
    assert s.shared_prompt(world.bob, mine.id).template == "my secret {{ x }}"
    assert s.fill(world.bob, "secret", {"x": "1"}) == "my secret 1"  # usable as /secret
    for change in (lambda: s.share(world.bob, "secret", False), lambda: s.delete_prompt(world.bob, "secret")):
        with pytest.raises(NotFound):  # but not bob's to change
            change()
    # bob's own prompt of the same name comes first for him; alice's stays as it was
    s.save_prompt(world.bob, "secret", "mine now")
    assert s.fill(world.bob, "secret", {}) == "mine now"
    assert s.fill(world.alice, "secret", {"x": "2"}) == "my secret 2"
    with pytest.raises(NotFound):
        s.shared_prompt(world.alice_elsewhere, mine.id)  # another project's

    s.share(world.alice, "secret", False)
    with pytest.raises(NotFound):
        s.shared_prompt(world.bob, mine.id)
    s.delete_prompt(world.alice, "secret")
    with pytest.raises(NotFound):
        s.prompt(world.alice, "secret")


def test_an_engineer_promotes_a_shared_prompt_into_the_registry_keeping_its_author(world: World) -> None:
    s, platform = world.service, world.platform
    view, _ = s.save_prompt(
        world.alice, "translate", "Translate to {{ lang }}: {{ text }}", description="Any language"
    )
    with pytest.raises(NotFound):  # not shared yet
        s.promote(world.bob.project_id, view.id, platform.catalog, actor="bob")
    s.share(world.alice, "translate")

    promoted = s.promote(world.bob.project_id, view.id, platform.catalog, actor="bob")
    assert (promoted.prompt, promoted.version, promoted.created, promoted.author) == (
        "translate",
        1,
        True,
        "alice",
    )
    registry = PromptService(platform.store, platform.catalog)
    version = registry.get(world.bob.project_id, "translate")
    assert version.author == "alice"
    assert version.messages == [{"role": "user", "content": "Translate to {{ lang }}: {{ text }}"}]
    assert version.variables == ["lang", "text"]
    assert "promoted by bob" in (version.message or "")
    assert s.shared_prompt(world.bob, view.id).promoted_to == "translate"

    # Again unchanged: no new version; changed, or into another prompt: a new version.
    assert s.promote(world.bob.project_id, view.id, platform.catalog, actor="bob").created is False
    s.save_prompt(world.alice, "translate", "Translate into {{ lang }}: {{ text }}", shared=True)
    again = s.promote(world.bob.project_id, view.id, platform.catalog, actor="bob")
    assert (again.version, again.created) == (2, True)
    into = s.promote(
        world.bob.project_id, view.id, platform.catalog, registry_name="support.translate", actor="bob"
    )
    assert (into.prompt, into.version) == ("support.translate", 1)
    assert s.find_shared(world.bob.project_id, "translate") == [view.id]
    assert s.find_shared(world.bob.project_id, "translate", author="carol") == []
    with pytest.raises(NotFound):  # another project cannot reach it
        s.promote(world.alice_elsewhere.project_id, view.id, platform.catalog, actor="x")
