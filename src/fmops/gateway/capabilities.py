"""What a model can do: its provider's capabilities, with the catalog entry's overrides."""

from __future__ import annotations

from fmops.catalog import ModelEntry
from fmops.providers.base import Capabilities
from fmops.providers.registry import get_provider_class

# Worked out once per catalog entry (entries are frozen, and replaced when the catalog changes): the
# gateway asks on every call. Keyed by identity; the entry is kept with its answer, so an id is not
# reused while it is cached.
_CAPABILITIES: dict[int, tuple[ModelEntry, Capabilities]] = {}
_CAPABILITIES_MAX = 4096


def capabilities(entry: ModelEntry) -> Capabilities:
    """What the model can do: its provider's capabilities, with the catalog entry's overrides."""
    found = _CAPABILITIES.get(id(entry))
    if found is not None and found[0] is entry:
        return found[1]
    caps = _capabilities(entry)
    if len(_CAPABILITIES) >= _CAPABILITIES_MAX:
        _CAPABILITIES.clear()
    _CAPABILITIES[id(entry)] = (entry, caps)
    return caps


def _capabilities(entry: ModelEntry) -> Capabilities:
    base = get_provider_class(entry.provider).capabilities
    override = entry.capabilities
    return Capabilities(
        chat=override.get("chat", base.chat),
        streaming=override.get("streaming", base.streaming),
        tools=override.get("tools", base.tools),
        json_schema=override.get("json_schema", base.json_schema),
        embeddings=override.get("embeddings", base.embeddings),
        local=base.local,
    )
