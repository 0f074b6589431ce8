"""A resolved catalog entry: everything the gateway needs to call one model."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from fmops.providers.base import ProviderConfig


@dataclass(frozen=True)
class ModelEntry:
    alias: str
    provider: str
    provider_model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    context_window: int | None = None
    input_price: float = 0.0  # per 1M tokens
    output_price: float = 0.0
    capabilities: dict[str, Any] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    timeout_seconds: float = 60.0
    max_retries: int = 2
    cache_ttl_seconds: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    id: str | None = None  # None for built-ins
    project_id: str | None = None
    created_at: datetime | None = None
    # Brings a file the options store in the artifact store (`options.stored`) to this machine.
    fetch: Callable[[str], Path | None] | None = field(default=None, repr=False, compare=False)

    @property
    def builtin(self) -> bool:
        return self.id is None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1_000_000

    def provider_config(self) -> ProviderConfig:
        return ProviderConfig(
            model=self.provider_model,
            base_url=self.base_url,
            api_key=self.api_key,
            options=dict(self.options),
            fetch=self.fetch,
        )

    @cached_property
    def connection_id(self) -> str:
        """Entries that reach the same upstream the same way share one provider instance. Worked out
        once per entry (two sha256s): the gateway asks for it several times on every call."""
        secret = hashlib.sha256((self.api_key or "").encode()).hexdigest()[:16]
        raw = orjson.dumps(
            [self.provider, self.provider_model, self.base_url, secret, self.options],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(raw).hexdigest()
