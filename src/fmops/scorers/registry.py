"""Scorer registry: built-ins and third-party scorers arrive through the `fmops.scorers` entry points
(see pyproject.toml); in-house modules named in FMOPS_PLUGINS may call `register` instead."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fmops.errors import UserError
from fmops.plugins import load_objects
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


def get_scorer(name: str) -> AnyScorer:
    known = scorers()
    if name not in known:
        listing = ", ".join(sorted(known)) or "none are installed"
        raise UserError(f"unknown scorer {name!r}; known scorers: {listing}", param="scorer")
    return known[name]


def build(name: str, config: Mapping[str, Any] | None, *, chat: ChatFn | None = None) -> Scorer[Any]:
    """A ready scorer; UserError for an unknown name or a bad config (naming the field)."""
    cls = get_scorer(name)
    return cls(cls.parse_config(config), chat=chat)
