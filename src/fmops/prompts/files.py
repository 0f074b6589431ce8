"""Prompts as YAML files (so they live in git): reading specs, writing them back, diffing versions.

Reading is `yaml.SafeLoader` (plain data only, no Python objects) with aliases refused: an alias
can make a few bytes expand into a huge document once it is walked. Writing puts keys in the
order a person reads them and multi-line text as `|` blocks, so a changed line of a prompt is a
changed line in `git diff` and in `fmops prompts diff`.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import ValidationError

from fmops.errors import UserError
from fmops.prompts.schemas import PromptSpec, PromptVersionView

SPEC_KEYS = ("name", "description", "model", "params", "messages", "output_schema", "message", "labels")


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem=f"aliases (*{getattr(event, 'anchor', '')}) are not accepted in a prompt file",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Block style needs text without trailing spaces on a line; other text keeps quoted style.
    style = "|" if "\n" in value and not any(line.endswith(" ") for line in value.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def parse_documents(text: str, source: str = "body") -> list[Any]:
    """Every YAML (or JSON) document in `text`; a syntax error names its line and column."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{source} is not valid YAML{where}: {exc.problem}", param=source) from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source} is not valid YAML: {exc}", param=source) from None


def spec_from(document: Any, source: str = "body") -> PromptSpec:
    """One parsed document as a spec; a bad field is a 400 naming it (and the file)."""
    if not isinstance(document, dict):
        raise UserError(f"{source}: a prompt must be a mapping (name, messages, ...)", param=source)
    try:
        return PromptSpec.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"{source}: {loc + ': ' if loc else ''}{message}", param=loc or source) from None


def load_specs(text: str, source: str = "body") -> list[PromptSpec]:
    """The prompts of a file: a prompt per YAML document, or a list of prompts (an export)."""
    prompts: list[Any] = []
    for document in parse_documents(text, source):
        prompts.extend(document if isinstance(document, list) else [document])
    if not prompts:
        raise UserError(f"{source} holds no prompt", param=source)
    if len(prompts) == 1:
        return [spec_from(prompts[0], source)]
    return [spec_from(p, f"{source} (prompt {i + 1})") for i, p in enumerate(prompts)]


def spec_document(view: PromptVersionView, description: str | None) -> dict[str, Any]:
    """A version as the spec that pushes it again: fields at their defaults are left out."""
    document: dict[str, Any] = {
        "name": view.name,
        "description": description,
        "model": view.model,
        "params": view.params,
        "messages": view.messages,
        "output_schema": view.output_schema,
        "message": view.message,
        "labels": view.labels,
    }
    return {k: document[k] for k in SPEC_KEYS if document[k] not in (None, {}, [])}


def dump_yaml(value: dict[str, Any] | list[dict[str, Any]]) -> str:
    """One YAML document: a prompt, or a list of prompts."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def content_yaml(view: PromptVersionView) -> str:
    """What a diff compares: the version's content (labels move and are not content)."""
    content = {
        "model": view.model,
        "params": view.params,
        "messages": view.messages,
        "output_schema": view.output_schema,
    }
    return dump_yaml({k: v for k, v in content.items() if v not in (None, {})})


def unified_diff(old: PromptVersionView, new: PromptVersionView, old_ref: str, new_ref: str) -> str:
    """A unified diff of two versions' YAML; empty when their content is the same."""

    def title(view: PromptVersionView, ref: str) -> str:
        return f"{view.name}@{ref}" + ("" if ref == str(view.version) else f" (version {view.version})")

    lines = difflib.unified_diff(
        content_yaml(old).splitlines(keepends=True),
        content_yaml(new).splitlines(keepends=True),
        fromfile=title(old, old_ref),
        tofile=title(new, new_ref),
    )
    return "".join(lines)
