"""Suites are checked whole before anything runs: every problem at once, with "did you mean"."""

from __future__ import annotations

from typing import Any

import pytest

from fmops.datasets.service import VersionInfo
from fmops.endpoints.schemas import EndpointSpec
from fmops.endpoints.service import EndpointService
from fmops.evals.suite import SuiteError, parse_suite
from fmops.prompts.schemas import PromptSpec, PromptVersionView
from fmops.prompts.service import PromptService
from fmops.store.models import EvalRun, Job

REPLY = "Hello from the mock upstream."


def add_dataset(world: Any, name: str, kind: str, records: list[dict[str, Any]]) -> VersionInfo:
    return world.platform.datasets.create_version(
        project_id=world.project, name=name, kind=kind, batches=[records]
    )


def start(world: Any, suite: dict[str, Any]) -> None:
    """Start a run as the world's admin (the suites here are refused before it exists)."""
    world.evals.start(world.project, suite, created_by_key_id=world.principal.key_id)


def test_the_shape_is_checked_field_by_field_with_suggestions() -> None:
    _suite, problems = parse_suite(
        """
name: s
cases: [{input: hi, expectd: x}]
targets:
  - {modle: a}
  - {endpoint: e, model: m}
scorer: []
scorers:
  - {name: regex, weight: -1}
  - {name: regex, threshold: 2}
concurrency: 0
"""
    )
    text = "\n".join(problems)
    assert "cases.0.expectd: unknown field (did you mean 'expected'?)" in text
    assert "targets.0.modle: unknown field (did you mean 'model'?)" in text
    assert "targets.1: an endpoint has its own model and prompt" in text
    assert "scorer: unknown field (did you mean 'scorers'?)" in text
    assert "scorers.0.weight" in text
    assert "scorers.1.threshold" in text
    assert "'regex' appears more than once" in text
    assert "concurrency" in text
    assert len(problems) >= 8


def test_a_weight_of_0_reports_a_scorer_outside_the_score_but_one_must_count() -> None:
    base = "name: s\ncases: [{input: hi, expected: hi}]\ntargets: [{model: m}]\n"
    suite, problems = parse_suite(base + "scorers: [{name: json, weight: 0}, {name: exact_match}]")
    assert problems == []
    assert suite is not None
    assert [s.weight for s in suite.scorers] == [0.0, 1.0]
    _, problems = parse_suite(base + "scorers: [{name: json, weight: 0}]")
    assert problems == [
        "scorers: give at least one a weight above 0; the case's score is their weighted mean"
    ]


@pytest.mark.parametrize(
    ("text", "problem"), [("name: [unclosed", "not valid YAML"), ("- just a list", "a suite is a mapping")]
)
def test_not_yaml_or_not_a_mapping_is_one_clear_problem(text: str, problem: str) -> None:
    with pytest.raises(SuiteError, match=problem):
        parse_suite(text)


def test_every_missing_reference_is_reported_at_once_and_nothing_runs(world) -> None:
    add_dataset(world, "triage-eval", "eval", [{"input": "a", "expected": "b"}])
    bad = {
        "name": "bad",
        "cases": {"dataset": "triage-evl"},
        "targets": [
            {"model": "mock-aa"},
            {"model": "mock-a", "prompt": "nope@production"},
            {"endpoint": "nowhere"},
            {"model": "mock-b", "parameters": {"temprature": 0}},
        ],
        "scorers": [{"name": "regexp", "config": {"pattern": "x"}}, {"name": "contains", "config": {}}],
    }
    with pytest.raises(SuiteError) as caught:
        start(world, bad)
    problems = caught.value.problems
    text = "\n".join(problems)
    assert "cases.dataset" in text
    assert "did you mean 'triage-eval'" in text
    assert "targets.0.model: no model 'mock-aa'" in text
    assert "did you mean" in text
    assert "targets.1.prompt: no prompt 'nope'" in text
    assert "targets.2.endpoint: no endpoint 'nowhere'" in text
    assert "targets.3.parameters.temprature" in text
    assert "scorers.0.name: no scorer 'regexp' (did you mean 'regex'?)" in text
    assert "scorers.1: invalid config for scorer 'contains'" in text
    assert len(problems) == 7
    assert caught.value.status_code == 400
    with world.platform.store.session() as session:
        assert session.query(EvalRun).count() == 0
        assert session.query(Job).count() == 0


def test_a_chat_dataset_is_refused_as_cases(world) -> None:
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    add_dataset(world, "chats", "chat", [chat])
    suite = {
        "name": "s",
        "cases": {"dataset": "chats"},
        "targets": [{"model": "mock-a"}],
        "scorers": ["json"],
    }
    with pytest.raises(SuiteError, match="holds chat records; an eval dataset"):
        start(world, suite)


def serve_prompt(world: Any, spec: PromptSpec, endpoint: str) -> PromptVersionView:
    """Push the prompt, label it production and serve it from an endpoint of that name."""
    prompts = PromptService(world.platform.store, world.platform.catalog)
    view, _ = prompts.push(world.project, spec, author="t", author_key_id=None)
    prompts.set_label(world.project, spec.name, "production", view.version, actor="t")
    EndpointService(world.platform.store, world.platform.catalog, prompts).create(
        world.project, EndpointSpec(name=endpoint, prompt=spec.name, label="production"), actor="t"
    )
    return view


def test_dataset_cases_prompt_and_endpoint_targets_run_and_pin_what_they_used(world) -> None:
    cases = [
        {"input": f"n{i}", "expected": REPLY, "metadata": {"variables": {"greeting": "Greet"}}}
        for i in range(4)
    ]
    version = add_dataset(world, "greet-eval", "eval", cases)
    spec = PromptSpec(
        name="greet", model="mock-a", messages=[{"role": "user", "content": "{{ greeting }} {{ input }}"}]
    )
    view = serve_prompt(world, spec, "greeter")
    run = world.run(
        {
            "name": "greet",
            "cases": {"dataset": "greet-eval@1"},
            "targets": [{"prompt": "greet@production"}, {"endpoint": "greeter"}],
            "scorers": [{"name": "regex", "config": {"pattern": "mock"}}],
        }
    )
    assert run.status == "succeeded", run.error
    assert run.definition["dataset"] == {
        "id": version.id,
        "ref": "greet-eval@1",
        "content_hash": version.content_hash,
    }
    assert run.definition["suite"]["targets"][0]["prompt_ref"] == str(view.version)
    assert [t["score"]["mean"] for t in run.summary["targets"]] == [1.0, 1.0]
    sent = [r["body"]["messages"] for r in world.mock.state.requests]
    assert {m[-1]["content"] for m in sent} == {f"Greet n{i}" for i in range(4)}
    assert len(sent) == 8


def test_an_instructions_only_prompt_is_followed_by_the_case_as_an_endpoint_appends_its_consumer(
    world,
) -> None:
    spec = PromptSpec(name="rules", model="mock-a", messages=[{"role": "system", "content": "Be terse."}])
    serve_prompt(world, spec, "terse")
    run = world.run(
        {
            "name": "terse",
            "cases": [{"input": "What is 2+2?"}, {"input": [{"role": "user", "content": "Hi"}]}],
            "targets": [{"prompt": "rules@production"}, {"endpoint": "terse"}],
            "scorers": [{"name": "regex", "config": {"pattern": "mock"}}],
        }
    )
    assert run.status == "succeeded", run.error
    sent = sorted(
        [(m["role"], m["content"]) for m in r["body"]["messages"]] for r in world.mock.state.requests
    )
    expected = [("system", "Be terse."), ("user", "What is 2+2?")], [("system", "Be terse."), ("user", "Hi")]
    assert sent == sorted([*expected, *expected])


def test_a_prompt_targets_answer_schema_is_asked_as_its_endpoint_would_ask_it(world) -> None:
    prompts = PromptService(world.platform.store, world.platform.catalog)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    spec = PromptSpec(name="shaped", model="mock-a", messages=[{"role": "user", "content": "{{ input }}"}])
    plain, _ = prompts.push(world.project, spec, author="t", author_key_id=None)
    shaped, _ = prompts.push(
        world.project, spec.model_copy(update={"output_schema": schema}), author="t", author_key_id=None
    )
    run = world.run(
        {
            "name": "shaped",
            "cases": [{"input": "x"}],
            "targets": [{"prompt": f"shaped@{plain.version}"}, {"prompt": f"shaped@{shaped.version}"}],
            "scorers": ["json"],
        }
    )
    assert run.status == "succeeded", run.error
    formats = sorted(
        (r["body"].get("response_format") or {}).get("type", "none") for r in world.mock.state.requests
    )
    assert formats == ["json_schema", "none"]
    asked = next(r["body"] for r in world.mock.state.requests if "response_format" in r["body"])
    assert asked["response_format"]["json_schema"] == {"name": "output", "schema": schema}
