"""Recipes: a YAML (or JSON) document whose `steps` is a list of one-key mappings, each naming a
registered step with its options:

    steps:
      - dedup: {method: exact}
      - dedup: {method: minhash, threshold: 0.8}
      - pii: {action: redact}
      - filter: {min_chars: 5, max_chars: 20000}
      - decontaminate: {against: triage-eval, ngram: 8}
      - split: {validation: 0.1, seed: 0}

`load_recipe` checks the whole recipe before anything runs and reports every problem at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from fmops.curation.base import Step
from fmops.curation.registry import steps as registered_steps
from fmops.errors import PayloadTooLarge, UserError

MAX_RECIPE_BYTES = 64_000
MAX_STEPS = 50


@dataclass(frozen=True)
class PlannedStep:
    name: str
    step: Step[Any]

    def as_dict(self) -> dict[str, Any]:
        """The step as a recipe entry, every option spelt out (defaults included)."""
        return {self.name: self.step.options.model_dump(mode="json")}


@dataclass(frozen=True)
class Recipe:
    steps: list[PlannedStep]

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [s.as_dict() for s in self.steps]}

    def datasets(self) -> list[str]:
        return [name for s in self.steps for name in s.step.datasets()]


class _RecipeLoader(yaml.SafeLoader):
    """Plain data only (safe_load's constructors), and no aliases: `*name` could make a few bytes of
    YAML stand for a list of billions, and a recipe never needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a recipe", mark)
        return super().compose_node(parent, index)


def _parse_text(text: str) -> Any:
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise PayloadTooLarge(f"the recipe is over {MAX_RECIPE_BYTES:,} bytes", param="recipe")
    try:
        # safe_load builds plain data only (no Python objects); JSON is a subset of YAML.
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader without aliases)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UserError(f"the recipe is not valid YAML{at}: {problem}", param="recipe") from None
    except RecursionError:
        raise UserError("the recipe nests too deeply to be a recipe", param="recipe") from None


def _option_problems(where: str, exc: ValidationError) -> list[str]:
    found = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        message = (
            "unknown option" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        )
        found.append(f"{where}: {loc + ': ' if loc else ''}{message}")
    return found


def load_recipe(raw: str | dict[str, Any], *, dataset_exists: Callable[[str], bool] | None = None) -> Recipe:
    """A checked recipe, or one UserError listing every problem (unknown steps and options, bad values,
    datasets that do not exist when `dataset_exists` is given)."""
    doc = _parse_text(raw) if isinstance(raw, str) else raw
    if not isinstance(doc, dict) or set(doc) != {"steps"} or not isinstance(doc["steps"], list):
        raise UserError("a recipe is a mapping with one key, `steps`: a list of steps", param="recipe")
    entries = doc["steps"]
    if not entries:
        raise UserError("the recipe has no steps", param="recipe")
    if len(entries) > MAX_STEPS:
        raise UserError(f"the recipe has {len(entries)} steps; at most {MAX_STEPS}", param="recipe")
    known = registered_steps()
    problems: list[str] = []
    planned: list[PlannedStep] = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or len(entry) != 1:
            problems.append(f"step {i}: write each step as one key naming the step, e.g. `- dedup: {{}}`")
            continue
        ((name, options),) = entry.items()
        where = f"step {i} ({name})"
        cls = known.get(str(name))
        if cls is None:
            problems.append(f"step {i}: unknown step {name!r}; known steps: {', '.join(sorted(known))}")
            continue
        if options is None:
            options = {}
        if not isinstance(options, dict):
            problems.append(f"{where}: options must be a mapping, e.g. `{{key: value}}`")
            continue
        try:
            step = cls(cls.Options.model_validate(options))
        except ValidationError as exc:
            problems.extend(_option_problems(where, exc))
            continue
        if dataset_exists is not None:
            for dataset in step.datasets():
                if not dataset_exists(dataset):
                    problems.append(f"{where}: no dataset named {dataset!r} in this project")
        planned.append(PlannedStep(str(name), step))
    if problems:
        raise UserError(
            f"the recipe has {len(problems)} problem{'s' if len(problems) > 1 else ''}: "
            + "; ".join(problems),
            param="recipe",
        )
    return Recipe(planned)
