"""Endpoints on both backends: every change checked, recorded and served at once (the registry
generation), experiments that restart when the variants change, and bad specs refused with a 400
that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from fmops.catalog import ModelSpec
from fmops.endpoints.generation import current
from fmops.endpoints.resolver import EndpointResolver
from fmops.endpoints.schemas import EndpointSpec, EndpointUpdate, validated
from fmops.errors import Conflict, NotFound, UserError
from support.endpoint_world import EndpointWorld

VARIANTS = [{"name": "a", "weight": 1, "label": "production"}, {"name": "b", "weight": 1, "version": 2}]


def generation(w: EndpointWorld) -> int:
    with w.platform.store.session() as session:
        return current(session, w.project)


def test_an_endpoint_is_created_changed_and_deleted_with_a_history(ep_world: EndpointWorld) -> None:
    w = ep_world
    before = generation(w)
    created = w.create(name="life", prompt="support", description="first")
    assert (created.config.label, created.config.model, created.experiment_started_at) == (
        "production",
        None,
        None,
    )
    assert generation(w) == before + 1  # every replica serves it on its next call

    described = w.update("life", description="second")
    assert (described.description, described.experiment_started_at) == ("second", None)

    experiment = w.update("life", variants=VARIANTS)
    assert experiment.experiment_started_at is not None
    assert [v.name for v in experiment.config.variants] == ["a", "b"]
    # A change elsewhere keeps the experiment running; new weights start a new one.
    kept = w.update("life", params={"temperature": 0})
    assert kept.experiment_started_at == experiment.experiment_started_at
    reweighted = w.endpoints.set_weights(w.project, "life", {"b": 3}, actor="ann")
    assert [v.weight for v in reweighted.config.variants] == [1, 3]
    assert reweighted.experiment_started_at is not None
    assert reweighted.experiment_started_at > experiment.experiment_started_at
    # A pinned version replaces the label, and the other way round.
    pinned = w.update("life", version=2)
    assert (pinned.config.label, pinned.config.version) == (None, 2)
    ended = w.update("life", variants=[], label="staging")
    assert (ended.config.label, ended.config.version, ended.experiment_started_at) == ("staging", None, None)

    with pytest.raises(NotFound):  # another project's endpoints are invisible
        w.endpoints.get(w.other, "life")
    with pytest.raises(Conflict) as clash:  # a model may not take an endpoint's name later
        w.platform.catalog.add(w.project, ModelSpec(alias="life", provider="openai", model="m"), trusted=True)
    assert clash.value.param == "alias"

    disabled = w.update("life", enabled=False)
    assert not disabled.enabled
    assert [e.name for e in w.endpoints.list(w.project, enabled_only=True)] == []
    resolver = EndpointResolver(w.platform.store, w.prompts)
    assert resolver.resolve_now(w.project, "life") is None  # served as if it did not exist

    kinds = [e.kind for e in w.endpoints.events(w.project, "life")]
    assert kinds[::-1] == [
        "created",
        "updated",
        "updated",
        "experiment_started",
        "updated",
        "weights",
        "experiment_started",
        "updated",
        "updated",
        "updated",
    ]
    w.endpoints.delete(w.project, "life", actor="ann")
    assert resolver.resolve_now(w.project, "life") is None
    resolver.close()
    with pytest.raises(NotFound):
        w.endpoints.get(w.project, "life")


def test_the_resolver_serves_a_moved_label_at_once_and_caches_between_changes(
    ep_world: EndpointWorld,
) -> None:
    w = ep_world
    w.create(name="served", prompt="support", label="staging", params={"temperature": 1})
    replica_a = EndpointResolver(w.platform.store, w.prompts)
    replica_b = EndpointResolver(w.platform.store, w.prompts)
    first = replica_a.resolve_now(w.project, "served")
    assert first is not None
    [variant] = first.variants
    assert variant.prompt is not None
    assert (variant.prompt.version, variant.model, variant.params) == (
        2,
        "small",
        {"temperature": 1, "max_tokens": 200},  # the version's params under the endpoint's
    )
    assert replica_a.resolve_now(w.project, "served") is first  # nothing changed: no reload
    assert replica_a.resolve_now(w.project, "small") is None  # a model's name: not an endpoint

    w.prompts.set_label(w.project, "support", "staging", 1, actor="ann")
    for replica in (replica_a, replica_b):
        moved = replica.resolve_now(w.project, "served")
        assert moved is not None
        assert moved.variants[0].prompt is not None
        assert moved.variants[0].prompt.version == 1
        replica.close()


def test_bad_specs_are_refused_naming_the_field(ep_world: EndpointWorld) -> None:
    w = ep_world
    w.create(name="taken", model="small")
    base: dict[str, Any] = {"name": "bad", "prompt": "support"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"label": "prod"}, "label", "no label 'prod' on prompt 'support'; labels: production, staging"),
        ({"version": 9}, "version", "no version 9"),
        ({"prompt": "nope"}, "prompt", "no prompt 'nope'"),
        ({"label": "production", "version": 1}, "version", "not both"),
        ({"prompt": None, "label": "production", "model": "small"}, "label", "set prompt too"),
        ({"prompt": None}, "model", "no model to call"),
        ({"model": "gpt-9"}, "model", "model 'gpt-9' does not exist"),
        ({"name": "small"}, "name", "is a model of this project"),
        ({"name": "Bad Name"}, "name", "should match pattern"),
        ({"params": {"temprature": 1}}, "params", "unknown chat parameter 'temprature'"),
        ({"params": {"temperature": 5}}, "params", "less than or equal to 2"),
        ({"fallbacks": ["gone"]}, "fallbacks.0", "'gone' does not exist"),
        ({"sticky": "ip"}, "sticky", "'user', 'session' or 'key'"),
        ({"variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}, "variants", "sum to 0"),
        ({"variants": [{"name": "a", "weight": -1}]}, "variants.0.weight", "greater than or equal to 0"),
        ({"variants": [{"name": "a", "weight": "1"}]}, "variants.0.weight", "JSON number"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants", "unique"),
        ({"variants": [{"name": "a", "label": "gone"}]}, "variants.0.label", "no label 'gone'"),
        ({"variants": [{"name": "a", "model": "gpt-9"}]}, "variants.0.model", "'gpt-9' does not exist"),
        ({"guardrails": [{"on": "input", "scorer": "nope"}]}, "guardrails.0.scorer", "unknown scorer 'nope'"),
        (
            {"guardrails": [{"on": "output", "scorer": "length"}]},
            "guardrails.0.config",
            "set min, max or both",
        ),
        (
            {"guardrails": [{"on": "input", "scorer": "regex", "config": {"pattern": "(unclosed"}}]},
            "guardrails.0.config.pattern",
            "not a valid regular expression",
        ),
        (
            {
                "guardrails": [
                    {"on": "output", "scorer": "judge", "config": {"model": "small", "rubric": "ok"}}
                ]
            },
            "guardrails.0.scorer",
            "calls a model",
        ),
        ({"guardrails": [{"on": "sideways", "scorer": "json"}]}, "guardrails.0.on", "'input' or 'output'"),
        (
            {"guardrails": [{"on": "output", "scorer": "exact_match"}]},
            "guardrails.0.scorer",
            "expected answer",
        ),
        (
            {"guardrails": [{"on": "output", "scorer": "latency", "config": {"max_ms": 100}}]},
            "guardrails.0.scorer",
            "latency or cost",
        ),
    ]
    for change, param, words in cases:
        with pytest.raises(UserError) as refused:
            w.endpoints.create(w.project, validated(EndpointSpec, {**base, **change}), actor="ann")
        assert (refused.value.status_code, refused.value.param) == (400, param), change
        assert words in refused.value.message, (change, refused.value.message)

    with pytest.raises(Conflict):
        w.endpoints.create(w.project, EndpointSpec(name="taken", model="small"), actor="ann")
    with pytest.raises(UserError) as update:
        w.endpoints.update(
            w.project, "taken", validated(EndpointUpdate, {"label": "production"}), actor="ann"
        )
    assert update.value.param == "label"
    with pytest.raises(UserError) as weights:
        w.endpoints.set_weights(w.project, "taken", {"a": 1}, actor="ann")
    assert weights.value.param == "weights"
    assert "no variants" in weights.value.message
    assert "bad" not in {e.name for e in w.endpoints.list(w.project)}  # nothing half-made
