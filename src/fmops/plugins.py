"""Plugin loading: built-ins and third parties register through the same entry-point groups.

Groups: `fmops.jobs` (job kinds, registered when their module is imported), `fmops.scorers` (scorer
classes, by entry-point name). Later services add theirs.
Modules named in the `plugins` setting are imported too, for in-house code that is not packaged.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

from fmops.errors import ConfigError

log = logging.getLogger(__name__)
_loaded: set[str] = set()
_objects: dict[str, dict[str, Any]] = {}
_one: dict[str, Any] = {}  # entry points loaded one by one (load_object), by "group:name"


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
