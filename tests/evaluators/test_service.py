"""Evaluator rules on both backends: configs checked against their scorer, names unique, projects apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from fmops.catalog import ModelSpec
from fmops.errors import Conflict, NotFound, UserError
from fmops.evaluators import EvaluatorService, RuleCreate, RuleUpdate
from fmops.platform import Platform


@dataclass
class World:
    service: EvaluatorService
    project: str
    other: str


@pytest.fixture
def world(platform: Platform) -> World:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        project = auth.project_by_name(session, "default").id
    other = auth.create_project("other").id
    spec = ModelSpec(alias="grader", provider="openai", model="gpt-x", base_url="http://127.0.0.1:9/v1")
    platform.catalog.add(project, spec, trusted=True)
    return World(EvaluatorService(platform.store, platform.catalog), project, other)


def create(world: World, project: str | None = None, **fields: Any) -> Any:
    body = RuleCreate.model_validate({"name": "is-json", "scorer": "json", **fields})
    return world.service.create(project or world.project, body, created_by_key_id="k1")


def test_create_list_get_update_delete(world: World) -> None:
    rule = create(world, model="small", sample_rate=0.25)
    assert (rule.name, rule.scorer, rule.model, rule.endpoint, rule.sample_rate, rule.enabled) == (
        "is-json",
        "json",
        "small",
        None,
        0.25,
        True,
    )
    assert rule.config == {"allow_code_fence": False}  # stored with its defaults, as it will run
    assert rule.created_by_key_id == "k1"
    judge = create(world, name="helpful", scorer="judge", config={"model": "grader", "rubric": "Helpful?"})
    assert [r.name for r in world.service.rules(world.project)] == ["helpful", "is-json"]
    assert world.service.get(world.project, judge.id).config["max_score"] == 5

    changed = world.service.update(
        world.project, rule.id, RuleUpdate.model_validate({"sample_rate": 1, "model": None, "enabled": False})
    )
    assert (changed.sample_rate, changed.model, changed.enabled, changed.scorer) == (1.0, None, False, "json")
    assert [r.id for r in world.service.enabled_rules()] == [judge.id]

    with pytest.raises(UserError) as caught:  # a new scorer checks the config again
        world.service.update(world.project, rule.id, RuleUpdate(scorer="regex"))
    assert caught.value.param == "config.pattern"
    swapped = world.service.update(
        world.project, rule.id, RuleUpdate.model_validate({"scorer": "regex", "config": {"pattern": "^OK"}})
    )
    assert (swapped.scorer, swapped.config["pattern"], swapped.config["expect"]) == ("regex", "^OK", "match")

    world.service.delete(world.project, rule.id)
    with pytest.raises(NotFound):
        world.service.get(world.project, rule.id)
    assert [r.name for r in world.service.rules(world.project)] == ["helpful"]


def test_names_are_unique_per_project(world: World) -> None:
    first = create(world)
    with pytest.raises(Conflict, match="an evaluator named 'is-json' already exists"):
        create(world)
    create(world, project=world.other)  # the same name is free in another project
    second = create(world, name="short", scorer="length", config={"max": 100})
    with pytest.raises(Conflict):
        world.service.update(world.project, second.id, RuleUpdate(name="is-json"))
    assert world.service.update(world.project, first.id, RuleUpdate(name="is-json")).name == "is-json"


def test_rules_of_another_project_are_invisible(world: World) -> None:
    theirs = create(world, project=world.other)
    for call in (
        lambda: world.service.get(world.project, theirs.id),
        lambda: world.service.update(world.project, theirs.id, RuleUpdate(enabled=False)),
        lambda: world.service.delete(world.project, theirs.id),
    ):
        with pytest.raises(NotFound, match="no evaluator with id"):
            call()
    assert world.service.get(world.other, theirs.id).enabled


BAD_RULES = [
    ({"scorer": "meteor"}, "scorer", "known scorers: all_of, any_of, bleu, chrf, classification, contains"),
    ({"scorer": "regex", "config": {"pattern": "(("}}, "config.pattern", "not a valid regular expression"),
    (
        {"scorer": "json_schema", "config": {"schema": {"type": 1}}},
        "config.schema",
        "not a valid JSON Schema",
    ),
    ({"scorer": "json", "config": {"allow_fences": True}}, "config.allow_fences", "Extra inputs"),
    (
        {"scorer": "judge", "config": {"model": "nope", "rubric": "x"}},
        "config.model",
        "'nope' does not exist",
    ),
]


def test_bad_rules_say_what_to_fix(world: World) -> None:
    for fields, param, fragment in BAD_RULES:
        with pytest.raises(UserError) as caught:
            create(world, **fields)
        assert caught.value.status_code == 400
        assert caught.value.param == param
        assert fragment in caught.value.message
    # The judge's model must exist in the rule's own project.
    with pytest.raises(UserError, match=r"config\.model: model 'grader' does not exist"):
        create(world, project=world.other, scorer="judge", config={"model": "grader", "rubric": "x"})
    assert world.service.rules(world.project) == world.service.rules(world.other) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"sample_rate": 0},
        {"sample_rate": 1.5},
        {"sample_rate": "0.5"},
        {"sample_rate": True},
        {"name": "has space"},
        {"name": ""},
        {"enabled": "yes"},
        {"filter": "x"},
    ],
)
def test_rule_bodies_are_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RuleCreate.model_validate({"name": "r", "scorer": "json", **fields})


def test_an_update_cannot_null_what_a_rule_needs() -> None:
    with pytest.raises(ValidationError, match="name cannot be null"):
        RuleUpdate.model_validate({"name": None})
    assert RuleUpdate.model_validate({"model": None}).changes() == {"model": None}
