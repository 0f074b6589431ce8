"""The packaged MiniLM sentence encoder, as the embedding guardrails (`topic`, `injection_semantic`)
call it: through the local-embeddings provider's engine thread, its failures the check's."""

from __future__ import annotations

from functools import cached_property

from fmops.guardrails.base import GuardrailError
from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.embeddings import LocalEmbeddingsProvider

EMBED_TIMEOUT_S = 120.0  # the first call loads the model


class Encoder:
    @cached_property
    def _provider(self) -> LocalEmbeddingsProvider:
        return LocalEmbeddingsProvider(ProviderConfig(model="default"))

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            return (await self._provider.embed(texts, timeout=EMBED_TIMEOUT_S)).vectors
        except ProviderError as exc:
            raise GuardrailError(f"the embedding model failed: {exc}") from exc
