"""Provider registry: built-ins and third-party providers are both declared in the `fmops.providers`
entry-point group (see pyproject.toml) and listed through it; a built-in looked up by name is
imported straight from plugins.BUILT_IN (no package metadata read)."""

from __future__ import annotations

import logging

from fmops.errors import UserError
from fmops.plugins import entry_points, load_object
from fmops.providers.base import Provider

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fmops.providers"
_registered: dict[str, type[Provider]] = {}
_loaded = False


def register(cls: type[Provider]) -> type[Provider]:
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registered:
            continue
        # Resolving an entry point imports only the module; heavy engines import lazily inside.
        try:
            cls = ep.load()
        except Exception:
            log.exception("provider plugin failed to load", extra={"provider": ep.name})
            continue
        _registered[ep.name] = cls
    _loaded = True


def providers() -> dict[str, type[Provider]]:
    _load_entry_points()
    return dict(_registered)


def _load_entry_point(name: str) -> None:
    """Import only the entry point called `name`: a gateway calling one provider need not import
    the others' modules (a built-in's without reading any package's metadata)."""
    cls = load_object(ENTRY_POINT_GROUP, name)
    if cls is not None:
        _registered[name] = cls


def get_provider_class(name: str) -> type[Provider]:
    if name not in _registered and not _loaded:
        _load_entry_point(name)
    if name in _registered:
        return _registered[name]
    known = providers()
    if name not in known:
        raise UserError(
            f"unknown provider {name!r}; installed providers: {', '.join(sorted(known))}", param="provider"
        )
    return known[name]
