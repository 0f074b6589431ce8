"""Scorer registry: built-ins and third-party scorers arrive through the `fmops.scorers` entry points
(see pyproject.toml); in-house modules named in FMOPS_PLUGINS may call `register` instead."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fmops.errors import UserError
from fmops.plugins import load_object, load_objects, object_names
from fmops.scorers.base import ChatFn, Scorer

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fmops.scorers"
AnyScorer = type[Scorer[Any]]
_registered: dict[str, AnyScorer] = {}


def register(cls: AnyScorer) -> AnyScorer:
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _registered.pop(name, None)


def scorers() -> dict[str, AnyScorer]:
    found: dict[str, AnyScorer] = {}
    for name, obj in load_objects(ENTRY_POINT_GROUP).items():
        if isinstance(obj, type) and issubclass(obj, Scorer):
            found[name] = obj
        else:
            log.error("scorer plugin is not a Scorer class; ignored", extra={"scorer": name})
    found.update(_registered)
    return found


def scorer_names() -> set[str]:
    """Every installed scorer's name, without importing any scorer's module."""
    return object_names(ENTRY_POINT_GROUP) | set(_registered)


def find_scorer(name: str) -> AnyScorer | None:
    """The scorer registered as `name`, its module alone imported; None when there is none."""
    if name in _registered:
        return _registered[name]
    obj = load_object(ENTRY_POINT_GROUP, name)
    if isinstance(obj, type) and issubclass(obj, Scorer):
        return obj
    if obj is not None:
        log.error("scorer plugin is not a Scorer class; ignored", extra={"scorer": name})
    return None


def get_scorer(name: str) -> AnyScorer:
    cls = find_scorer(name)
    if cls is None:
        listing = ", ".join(sorted(scorer_names())) or "none are installed"
        raise UserError(f"unknown scorer {name!r}; known scorers: {listing}", param="scorer")
    return cls


def describe(name: str, cls: AnyScorer) -> dict[str, Any]:
    """What a scorer declares, for listings (API, CLI, console): its facts, where it can be used
    (an eval suite, an online evaluator, an endpoint's guardrail) and its config's JSON schema."""
    return {
        "name": name,  # as registered (a plugin's entry-point name)
        "description": cls.description,
        "runs_as": "job" if cls.needs_model else "inline",
        "needs_model": cls.needs_model,
        "needs_expected": cls.needs_expected,
        "aggregates": cls.aggregates,
        "slow": cls.slow,
        "needs_record": cls.needs_record,
        "usable_in": {
            "suite": True,
            # A live trace has no expected answer; a guardrail decides before the call's record
            # exists, on the request path (the same rules the evaluator and endpoint checks apply).
            "online_evaluator": not cls.needs_expected,
            "guardrail": not (cls.needs_model or cls.needs_expected or cls.needs_record or cls.slow),
        },
        "config_schema": cls.config_schema(),
    }


def build(name: str, config: Mapping[str, Any] | None, *, chat: ChatFn | None = None) -> Scorer[Any]:
    """A ready scorer; UserError for an unknown name or a bad config (naming the field)."""
    cls = get_scorer(name)
    return cls(cls.parse_config(config), chat=chat)
