"""Model providers: local engines and remote APIs behind one interface (see base.py)."""

from fmops.providers.base import (
    Capabilities,
    Embeddings,
    Provider,
    ProviderConfig,
    ProviderError,
    ProviderTimeout,
)
from fmops.providers.registry import get_provider_class, providers, register

__all__ = [
    "Capabilities",
    "Embeddings",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderTimeout",
    "get_provider_class",
    "providers",
    "register",
]
