"""Plugin loading: built-ins and third parties register through the same entry-point groups.

Groups: `fmops.jobs` (job kinds). Later services add theirs (`fmops.providers`, `fmops.scorers`).
Modules named in the `plugins` setting are imported too, for in-house code that is not packaged.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from fmops.errors import ConfigError

log = logging.getLogger(__name__)
_loaded: set[str] = set()


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


def load_modules(modules: list[str]) -> None:
    for name in modules:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"FMOPS_PLUGINS names {name!r}, which cannot be imported: {exc}") from None
        _loaded.add(name)
