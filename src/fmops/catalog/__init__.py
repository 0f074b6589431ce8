"""Model catalog: built-in models and each project's own, with profiles, prices and credentials."""

from fmops.catalog.builtin import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from fmops.catalog.entry import ModelEntry
from fmops.catalog.service import Catalog, ModelSpec, ModelUpdate, public_view

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_EMBEDDING_MODEL",
    "Catalog",
    "ModelEntry",
    "ModelSpec",
    "ModelUpdate",
    "public_view",
]
