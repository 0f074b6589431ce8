"""Guardrails arrive through the `fmops.guardrails` entry points (the built-ins too); in-house ones may
register themselves. A bad config is one 400 naming every bad field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import ClassVar

import pytest

from fmops.errors import UserError
from fmops.guardrails.base import Context, Decision, Guardrail, GuardrailConfig, Stage
from fmops.guardrails.registry import (
    ENTRY_POINT_GROUP,
    build,
    describe,
    get_guardrail,
    guardrails,
    register,
    unregister,
)

BUILT_IN = {
    "pii",
    "secrets",
    "regex",
    "length",
    "json_schema",
    "system_prompt_leak",
    "scorer",
    "injection",
    "injection_semantic",
    "topic",
    "judge",
}


class WordConfig(GuardrailConfig):
    word: str


class NoWord(Guardrail[WordConfig]):
    name: ClassVar[str] = "test.no-word"
    description: ClassVar[str] = "Blocks a word"
    Config = WordConfig

    def check(self, text: str, context: Context) -> Decision:
        return Decision.block("the word") if self.config.word in text.split() else Decision.allow()


@pytest.fixture
def no_word() -> Iterator[type[NoWord]]:
    register(NoWord)
    yield NoWord
    unregister(NoWord.name)


def test_built_ins_are_entry_points_like_a_third_partys() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(declared) >= BUILT_IN
    found = guardrails()
    for name in BUILT_IN:
        cls = found[name]
        assert issubclass(cls, Guardrail)
        assert cls.name == name  # the entry-point name is the class's own
        assert declared[name] == f"{cls.__module__}:{cls.__qualname__}"


def test_unknown_name_is_a_400_listing_the_known_ones() -> None:
    with pytest.raises(UserError) as caught:
        get_guardrail("piii")
    assert caught.value.status_code == 400
    assert caught.value.param == "guardrail"
    assert "'piii'" in caught.value.message
    for name in BUILT_IN:
        assert name in caught.value.message


def test_a_bad_config_names_every_bad_field_in_one_message() -> None:
    with pytest.raises(UserError) as caught:
        build("length", {"max_chars": 0, "max_tokens": "many", "maxchars": 5})
    message = caught.value.message
    assert message.startswith("invalid config for guardrail 'length': ")
    assert "config.max_chars: " in message
    assert "config.max_tokens: " in message
    assert "config.maxchars: Extra inputs are not permitted" in message
    assert caught.value.param == "config.max_chars"


def test_a_config_rule_across_fields_is_named_too() -> None:
    with pytest.raises(UserError, match=r"config: set max_chars, max_tokens or both"):
        build("length", {})


def test_register_and_unregister(no_word: type[NoWord]) -> None:
    guard = build("test.no-word", {"word": "x"})
    assert guard.check("a x b", Context(Stage.input)).verdict == "block"
    unregister(no_word.name)
    with pytest.raises(UserError):
        build("test.no-word", {"word": "x"})


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_describe_every_built_in(name: str) -> None:
    info = describe(name, get_guardrail(name))
    assert info["name"] == name
    assert info["description"]
    assert set(info["stages"]) <= {"input", "output"}
    assert info["stages"]
    assert isinstance(info["spans"], bool)
    assert isinstance(info["slow"], bool)
    assert isinstance(info["needs_model"], bool)
    json.dumps(info)  # served as JSON as it is
    # Unknown keys are refused (a typo is a 400, not ignored).
    assert info["config_schema"].get("additionalProperties") is False
