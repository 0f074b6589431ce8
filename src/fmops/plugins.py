"""Plugin loading: built-ins and third parties register through the same entry-point groups.

Groups: `fmops.jobs` (job kinds, registered when their module is imported), `fmops.scorers` (scorer
classes, by entry-point name). Later services add theirs.
Modules named in the `plugins` setting are imported too, for in-house code that is not packaged.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from fmops.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

log = logging.getLogger(__name__)
_loaded: set[str] = set()
_objects: dict[str, dict[str, Any]] = {}
_one: dict[str, Any] = {}  # entry points loaded one by one (load_object), by "group:name"

# fmops's own entry points of the groups looked up one name at a time, as pyproject.toml declares
# them (tests/test_plugins.py keeps the two equal). A name found here is imported directly: finding
# it among the entry points would read every installed package's metadata, ~40 ms of each command's
# start on top of importing importlib.metadata (an eval run looks up a provider and two scorers).
# A third party cannot take a built-in's name, as in the provider registry.
BUILT_IN: dict[str, dict[str, str]] = {
    "fmops.providers": {
        "openai": "fmops.providers.openai:OpenAIProvider",
        "anthropic": "fmops.providers.anthropic:AnthropicProvider",
        "llamacpp": "fmops.providers.llamacpp:LlamaCppProvider",
        "transformers": "fmops.providers.transformers:TransformersProvider",
        "vllm": "fmops.providers.vllm:VLLMProvider",
        "local-embeddings": "fmops.providers.embeddings:LocalEmbeddingsProvider",
    },
    "fmops.scorers": {
        "json": "fmops.scorers.builtin:JsonValid",
        "json_schema": "fmops.scorers.builtin:JsonSchemaValid",
        "regex": "fmops.scorers.builtin:RegexMatch",
        "length": "fmops.scorers.builtin:Length",
        "contains": "fmops.scorers.builtin:Contains",
        "any_of": "fmops.scorers.builtin:AnyOf",
        "all_of": "fmops.scorers.builtin:AllOf",
        "exact_match": "fmops.scorers.match:ExactMatch",
        "numeric": "fmops.scorers.match:NumericTolerance",
        "field_match": "fmops.scorers.match:FieldMatch",
        "rouge_l": "fmops.scorers.overlap:RougeL",
        "bleu": "fmops.scorers.overlap:Bleu",
        "chrf": "fmops.scorers.overlap:Chrf",
        "embedding_similarity": "fmops.scorers.embedding:EmbeddingSimilarity",
        "classification": "fmops.scorers.classification:Classification",
        "latency": "fmops.scorers.bounds:LatencyBound",
        "cost": "fmops.scorers.bounds:CostBound",
        "judge": "fmops.scorers.judge:LLMJudge",
        "judge_pairwise": "fmops.scorers.pairwise:PairwiseJudge",
    },
    "fmops.optimizers": {
        "fewshot": "fmops.optimizers.fewshot:FewShot",
        "instructions": "fmops.optimizers.instructions:Instructions",
        "gepa": "fmops.optimizers.pareto:Gepa",
    },
}


def load_group(group: str) -> None:
    """Import every entry point of `group` once; a broken plugin is logged, not fatal."""
    for ep in entry_points(group=group):
        ident = f"{group}:{ep.name}"
        if ident in _loaded:
            continue
        try:
            ep.load()
        except Exception:
            log.exception("plugin failed to load", extra={"plugin": ident})
        _loaded.add(ident)


def load_objects(group: str) -> dict[str, Any]:
    """What each entry point of `group` names, by entry-point name, resolved once; a broken plugin is
    logged and left out."""
    if group not in _objects:
        found: dict[str, Any] = {}
        for ep in entry_points(group=group):
            try:
                found[ep.name] = ep.load()
            except Exception:
                log.exception("plugin failed to load", extra={"plugin": f"{group}:{ep.name}"})
        _objects[group] = found
    return dict(_objects[group])


def object_names(group: str) -> set[str]:
    """The entry-point names of `group`, without importing anything (the package metadata only)."""
    if group in _objects:
        return set(_objects[group])
    return {ep.name for ep in entry_points(group=group)}


def load_object(group: str, name: str) -> Any | None:
    """What the entry point `name` of `group` names, importing that plugin alone: a suite naming two
    scorers loads two modules, not every scorer's (a judge's, an encoder's). None when there is no such
    entry point or it fails to load (logged)."""
    if group in _objects:
        return _objects[group].get(name)
    key = f"{group}:{name}"
    if key not in _one:
        _one[key] = None
        if target := BUILT_IN.get(group, {}).get(name):
            module, _, attr = target.partition(":")
            _one[key] = getattr(importlib.import_module(module), attr)
            return _one[key]
        for ep in entry_points(group=group, name=name):
            try:
                _one[key] = ep.load()
            except Exception:
                log.exception("plugin failed to load", extra={"plugin": key})
            break
    return _one[key]


def load_modules(modules: list[str]) -> None:
    for name in modules:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"FMOPS_PLUGINS names {name!r}, which cannot be imported: {exc}") from None
        _loaded.add(name)


def entry_points(*, group: str, name: str | None = None) -> EntryPoints:
    """importlib.metadata's, imported when first needed (see BUILT_IN)."""
    from importlib.metadata import entry_points as installed

    return installed(group=group) if name is None else installed(group=group, name=name)
