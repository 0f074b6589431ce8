"""Dynamic few-shot at serving time: the examples for one endpoint call, and the span that says so.

The gateway asks `Retriever.retrieve` for a call to an endpoint with a `fewshot:` option, with the
text of the call's last user message. The dataset version is resolved once per registry
generation, its index is loaded once per process (fmops.fewshot.index.CACHE), and a call pays the
query's encoding and one matrix-vector product. A retrieval that fails (the dataset deleted, the
encoder missing) serves the call without examples; its span says why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fmops.errors import FmopsError
from fmops.fewshot.examples import Example
from fmops.fewshot.schemas import FewshotSpec
from fmops.gateway.spans import new_span_id
from fmops.providers.base import ProviderError
from fmops.store import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    from fmops.artifacts import ArtifactStore
    from fmops.datasets import DatasetService, VersionInfo
    from fmops.fewshot.index import Encoder, ExampleIndex
    from fmops.store import Store

log = logging.getLogger(__name__)
SPAN_KIND = "retrieval"
_TEXT = 500  # characters of each example's input and output kept in the span
_QUERY_TIMEOUT_S = 30.0
_ON_LOOP = 20_000  # examples searched on the event loop (~1 ms at most); larger indexes on a thread


class NotReady(FmopsError):
    """The dataset version's index is not built yet (a build has started)."""


@dataclass
class Retrieval:
    """What one call retrieved, and how long it took."""

    spec: FewshotSpec
    start: datetime
    version_id: str | None = None
    examples: list[Example] = field(default_factory=list)
    latency_ms: float = 0.0
    embed_ms: float | None = None
    search_ms: float | None = None
    error: str | None = None

    def attributes(self) -> dict[str, Any]:
        """The span's attributes, OpenTelemetry GenAI-style (gen_ai.* where a convention exists)."""
        values: dict[str, Any] = {
            "gen_ai.operation.name": SPAN_KIND,
            "gen_ai.request.model": "all-minilm-l6-v2",
            "fmops.fewshot.dataset": self.spec.dataset,
            "fmops.fewshot.version_id": self.version_id,
            "fmops.fewshot.k": self.spec.k,
            "fmops.fewshot.min_similarity": self.spec.min_similarity,
            "fmops.fewshot.returned": len(self.examples),
            "fmops.fewshot.ids": [e.id for e in self.examples],
            "fmops.fewshot.rows": [e.row for e in self.examples],
            "fmops.fewshot.similarities": [round(e.similarity, 4) for e in self.examples],
            "fmops.fewshot.embed_ms": self.embed_ms,
            "fmops.fewshot.search_ms": self.search_ms,
        }
        return {k: v for k, v in values.items() if v is not None}

    def span(self, record: Any) -> dict[str, Any]:
        """The child span of the call's `record` (fmops.gateway.spans.CallRecord). It keeps the
        examples' texts (the dataset's), never the caller's message: an input guardrail may redact
        that from the call's span, and this one is written before any guardrail has run."""
        return {
            "span_id": new_span_id(),
            "trace_id": record.trace_id,
            "parent_span_id": record.span_id,
            "project_id": record.principal.project_id,
            "name": f"{SPAN_KIND} {self.spec.dataset}"[:200],
            "kind": SPAN_KIND,
            "start_time": self.start,
            "end_time": self.start + timedelta(milliseconds=self.latency_ms),
            "status": "error" if self.error else "ok",
            "status_message": self.error,
            "latency_ms": self.latency_ms,
            "key_id": record.principal.key_id,
            "user": record.user or record.principal.user_name,
            "session_id": record.session_id,
            "endpoint": record.endpoint,
            "model": None,
            "provider": None,
            "response_model": None,
            "input_tokens": None,
            "output_tokens": None,
            "cost": None,
            "ttft_ms": None,
            "cache_hit": False,
            "prompt_name": None,
            "prompt_version": None,
            "variant": None,
            "input": {"dataset": self.spec.dataset, "k": self.spec.k},
            "output": {
                "examples": [
                    {
                        "row": e.row,
                        "id": e.id,
                        "similarity": round(e.similarity, 4),
                        "input": e.input[:_TEXT],
                        "output": e.output[:_TEXT],
                    }
                    for e in self.examples
                ]
            },
            "attributes": self.attributes(),
        }


class Retriever:
    """The gateway's few-shot examples: datasets resolved per registry generation, indexes held in
    this process's memory."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore | Callable[[], ArtifactStore],
        encoder: Encoder | None = None,
    ) -> None:
        self.store = store
        # A factory is called on first use: every gateway builds a Retriever, few use one, and the
        # artifact store's fsspec costs each eval or judge process ~12 ms and a few MB to import.
        self._artifacts = artifacts
        self._encoder = encoder
        self._versions: dict[tuple[str, str], tuple[int, VersionInfo]] = {}
        self._datasets: DatasetService | None = None
        self._building: dict[str, threading.Thread] = {}  # content hash -> its build
        self._lock = threading.Lock()

    @property
    def artifacts(self) -> ArtifactStore:
        if callable(self._artifacts):
            self._artifacts = self._artifacts()
        return self._artifacts

    @property
    def datasets(self) -> DatasetService:
        if self._datasets is None:
            from fmops.datasets import DatasetService  # pyarrow: only once an endpoint uses few-shot

            self._datasets = DatasetService(self.store, self.artifacts)
        return self._datasets

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from fmops.fewshot.index import default_encoder

            self._encoder = default_encoder()
        return self._encoder

    def _version(self, project_id: str, ref: str, generation: int) -> VersionInfo:
        held = self._versions.get((project_id, ref))
        if held is not None and held[0] == generation:
            return held[1]
        version = self.datasets.resolve(project_id, ref)
        self._versions[(project_id, ref)] = (generation, version)
        return version

    def _index(self, project_id: str, ref: str, generation: int) -> tuple[VersionInfo, ExampleIndex]:
        from fmops.fewshot.index import CACHE, ExampleIndex

        version = self._version(project_id, ref, generation)
        held = CACHE.held(self.artifacts, version, project_id=project_id)
        if held is None and not CACHE.stored(self.datasets, version, project_id=project_id):
            # Never built on a call (10,000 examples took minutes here, holding the encoder that
            # every call needs): built once on a thread of its own; calls have no examples meanwhile.
            self._build_later(project_id, version)
            raise NotReady(
                f"the example index of {ref} is being built (`fmops data index {ref}` builds it ahead)"
            )
        index = held or ExampleIndex.for_version(
            self.datasets, version, project_id=project_id, encoder=self.encoder
        )
        return version, index

    def _build_later(self, project_id: str, version: VersionInfo) -> None:
        from fmops.fewshot.index import ExampleIndex

        def build() -> None:
            try:
                ExampleIndex.for_version(self.datasets, version, project_id=project_id, encoder=self.encoder)
            except Exception:
                log.exception("the example index of %s could not be built", version.ref)
            finally:
                with self._lock:
                    self._building.pop(version.content_hash, None)

        with self._lock:
            if version.content_hash in self._building:
                return
            thread = threading.Thread(target=build, name=f"fewshot-index-{version.ref}", daemon=True)
            self._building[version.content_hash] = thread
        thread.start()

    def building(self) -> list[threading.Thread]:
        """The index builds running now."""
        with self._lock:
            return list(self._building.values())

    def _held(self, project_id: str, ref: str, generation: int) -> tuple[VersionInfo, ExampleIndex] | None:
        """The version and its index when both are in memory already: no thread hop, nothing read."""
        from fmops.fewshot.index import CACHE

        held = self._versions.get((project_id, ref))
        if held is None or held[0] != generation:
            return None
        index = CACHE.held(self.artifacts, held[1], project_id=project_id)
        return (held[1], index) if index is not None else None

    async def retrieve(
        self, project_id: str, spec: FewshotSpec, query: str, *, generation: int = 0
    ) -> Retrieval:
        """The examples for `query`; `generation`: the registry generation the endpoint was read at
        (a dataset version is looked up again when it changes)."""
        retrieval = Retrieval(spec, utcnow())
        started = time.perf_counter()
        try:
            found = self._held(project_id, spec.dataset, generation)
            if found is None:
                found = await asyncio.to_thread(self._index, project_id, spec.dataset, generation)
            version, index = found
            retrieval.version_id = version.id  # the index may be shared with same-content versions
            encoded = time.perf_counter()
            vector = (await self.encoder.embed([query], timeout=_QUERY_TIMEOUT_S))[0]
            searched = time.perf_counter()
            if len(index) <= _ON_LOOP:
                retrieval.examples = index.nearest_vector(vector, spec.k, spec.min_similarity)
            else:  # tens of milliseconds: not on the event loop, which serves every other call
                retrieval.examples = await asyncio.to_thread(
                    index.nearest_vector, vector, spec.k, spec.min_similarity
                )
            retrieval.embed_ms = (searched - encoded) * 1000
            retrieval.search_ms = (time.perf_counter() - searched) * 1000
        except (FmopsError, ProviderError) as exc:
            retrieval.error = f"no examples: {exc.message}"
            log.warning("few-shot retrieval failed: %s", exc.message)
        except Exception as exc:  # the call is still served, without examples; its span says why
            retrieval.error = f"no examples: {type(exc).__name__}: {exc}"[:2000]
            log.exception("few-shot retrieval failed")
        retrieval.latency_ms = (time.perf_counter() - started) * 1000
        return retrieval
