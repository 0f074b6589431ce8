"""Curation steps by name: the built-ins and third parties' arrive through the `fmops.curation` entry
points (see pyproject.toml); in-house modules named in FMOPS_PLUGINS may call `register` instead."""

from __future__ import annotations

import logging
from typing import Any

from fmops.curation.base import Step
from fmops.plugins import load_objects

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fmops.curation"
AnyStep = type[Step[Any]]
_registered: dict[str, AnyStep] = {}


def register(cls: AnyStep) -> AnyStep:
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _registered.pop(name, None)


def steps() -> dict[str, AnyStep]:
    found: dict[str, AnyStep] = {}
    for name, obj in load_objects(ENTRY_POINT_GROUP).items():
        if isinstance(obj, type) and issubclass(obj, Step):
            found[name] = obj
        else:
            log.error("curation plugin is not a Step class; ignored", extra={"step": name})
    found.update(_registered)
    return found
