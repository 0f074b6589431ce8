"""Recipes: YAML in, every problem reported at once, plugins through the registry and entry points."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

import pytest

from fmops.curation import Step, StepContext, StepOptions, StepReport, load_recipe, register, unregister
from fmops.curation.base import Batch, Source, counted
from fmops.errors import PayloadTooLarge, UserError
from fmops.plugins import load_objects
from support.curation_data import chat, run_step

RECIPE = """
steps:
  - dedup: {method: exact}
  - dedup: {method: minhash, threshold: 0.8}
  - pii: {action: redact}            # or mask, drop
  - filter: {min_chars: 5, max_chars: 20000}
  - decontaminate: {against: triage-eval, ngram: 8}
  - split: {validation: 0.1, seed: 0}
"""


def test_the_issue_recipe_loads_with_every_option_spelt_out() -> None:
    recipe = load_recipe(RECIPE, dataset_exists=lambda name: name == "triage-eval")
    assert [s.name for s in recipe.steps] == ["dedup", "dedup", "pii", "filter", "decontaminate", "split"]
    assert recipe.datasets() == ["triage-eval"]
    spelt = recipe.as_dict()["steps"]
    assert spelt[1]["dedup"] == {
        "method": "minhash",
        "threshold": 0.8,
        "num_perm": 128,
        "bands": None,
        "rows": None,
        "shingle": 5,
        "seed": 0,
    }
    assert spelt[5]["split"] == {"validation": 0.1, "test": 0.0, "seed": 0, "stratify": None}
    assert load_recipe(recipe.as_dict()).as_dict() == recipe.as_dict()  # JSON form round-trips


def test_every_problem_is_reported_before_anything_runs() -> None:
    bad = """
steps:
  - dedupe: {}
  - dedup: {method: fuzzy}
  - pii: {action: redact, colour: red}
  - filter: {min_chars: -1}
  - decontaminate: {against: missing-eval}
  - split: 0.1
  - [not, a, mapping]
"""
    with pytest.raises(UserError) as caught:
        load_recipe(bad, dataset_exists=lambda name: False)
    message = caught.value.message
    assert message.startswith("the recipe has 7 problems: ")
    for expected in (
        "step 1: unknown step 'dedupe'; known steps: decontaminate, dedup, filter, pii, split",
        "step 2 (dedup): method: Input should be 'exact' or 'minhash'",
        "step 3 (pii): colour: unknown option",
        "step 4 (filter): min_chars: Input should be greater than or equal to 0",
        "step 5 (decontaminate): no dataset named 'missing-eval' in this project",
        "step 6 (split): options must be a mapping",
        "step 7: write each step as one key naming the step",
    ):
        assert expected in message
    assert caught.value.param == "recipe"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps: [", "the recipe is not valid YAML at line 1"),
        ("- dedup: {}", "a recipe is a mapping with one key, `steps`"),
        ("steps: []", "the recipe has no steps"),
        ("steps: [{dedup: {}}]\nextra: 1", "a recipe is a mapping with one key, `steps`"),
        ("!!python/object/apply:os.system ['echo hi']", "the recipe is not valid YAML"),
        (
            "a: &a [en, en, en]\nsteps: [{filter: {language: *a}}]",
            "the recipe is not valid YAML at line 2, column 29: aliases (*name) are not allowed",
        ),
    ],
)
def test_malformed_recipes(text: str, expected: str) -> None:
    with pytest.raises(UserError, match=re.escape(expected)):
        load_recipe(text)


def test_deeply_nested_recipe() -> None:
    with pytest.raises(UserError, match="nests too deeply"):
        load_recipe("steps: " + "[" * 20_000 + "]" * 20_000)


def test_oversized_recipe() -> None:
    with pytest.raises(PayloadTooLarge):
        load_recipe("steps:\n" + "  - dedup: {}\n" * 10_000)


def test_builtins_arrive_through_the_entry_point_group() -> None:
    found = load_objects("fmops.curation")
    assert {"dedup", "pii", "filter", "decontaminate", "split"} <= set(found)
    assert found["dedup"].__module__ == "fmops.curation.steps.dedup"


class KeywordOptions(StepOptions):
    word: str


class DropKeyword(Step[KeywordOptions]):
    """A third party's step: drop records that mention a word."""

    name = "drop-keyword"
    Options = KeywordOptions
    description: ClassVar[str] = "Drop records mentioning a word"

    def run(self, source: Source, ctx: StepContext, report: StepReport) -> Iterator[Batch]:
        for batch in counted(source, ctx, report):
            kept = [r for r in batch if self.options.word not in ctx.text(r)]
            for _ in range(len(batch) - len(kept)):
                report.remove("keyword")
            report.records_out += len(kept)
            yield kept


@pytest.fixture
def plugin() -> Iterator[None]:
    register(DropKeyword)
    yield
    unregister(DropKeyword.name)


@pytest.mark.usefixtures("plugin")
def test_a_registered_plugin_step_runs_in_a_recipe() -> None:
    recipe = load_recipe("steps:\n  - drop-keyword: {word: secret}\n  - dedup: {}")
    assert [s.name for s in recipe.steps] == ["drop-keyword", "dedup"]
    out, report, _ = run_step("drop-keyword", {"word": "secret"}, [chat("a secret"), chat("public")])
    assert [r["messages"][0]["content"] for r in out] == ["public"]
    assert report.counts()["removed"] == {"keyword": 1}
    with pytest.raises(UserError, match="step 1 \\(drop-keyword\\): word: Field required"):
        load_recipe("steps:\n  - drop-keyword: {}")
