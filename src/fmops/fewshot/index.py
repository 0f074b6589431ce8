"""The example index of a dataset version: its demonstrations' input embeddings, searched exactly.

Built once per version (a version never changes) and stored as one `.npz` artifact keyed by the
version's content hash and the encoder, so the same records reached another way share it:

    fewshot/<project id>/<content hash>.all-minilm-l6-v2.v1.npz
      vectors  float32 [n, 384], L2-normalised     rows  int64 [n] (row numbers in the version)
      ids      uint8 [n, 16] (record hashes)       texts, meta  uint8 (JSON)

Loaded with `allow_pickle=False` (an artifact is data, never code) and kept in memory, one copy per
process (`IndexCache`). Search is one float32 matrix-vector product and a partial sort: exact, and
at 10,000 examples (15 MB) well under a millisecond, a small fraction of the query's own encoding
(benchmarks/fewshot_overhead.py), so an approximate index (FAISS, hnswlib) would add a dependency,
a build step and recall loss for nothing at the sizes demonstrations come in (MAX_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from fmops.errors import UserError
from fmops.fewshot.examples import Example, demonstration
from fmops.fewshot.sweep import PREFIX
from fmops.providers.base import ProviderConfig
from fmops.providers.embeddings import LocalEmbeddingsProvider

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from fmops.artifacts import ArtifactStore
    from fmops.datasets import DatasetService, VersionInfo

ENCODER = "all-minilm-l6-v2"
FORMAT = 1
MAX_EXAMPLES = 100_000  # 150 MB of vectors: beyond this, curate a smaller set of demonstrations
EMBED_TIMEOUT_S = 600.0  # a whole chunk, the first one loading the model
_CHUNK = 256  # texts per encoder call while building (progress is reported per chunk)

Progress = Callable[[int, int], None]  # (examples embedded, examples in all)


class Encoder:
    """The packaged all-MiniLM-L6-v2 through the `local-embeddings` provider: its engine thread is
    shared by every user in the process (the gateway's /v1/embeddings, the embedding scorer)."""

    name = ENCODER

    def __init__(self, device: str | None = None) -> None:
        options = {"device": device} if device else {}
        self._provider = LocalEmbeddingsProvider(ProviderConfig(model="default", options=options))

    async def embed(self, texts: list[str], *, timeout: float = EMBED_TIMEOUT_S) -> NDArray[np.float32]:
        """Unit vectors, one row per text."""
        result = await self._provider.embed(texts, timeout=timeout)
        return _unit(np.asarray(result.vectors, dtype=np.float32).reshape(len(texts), -1))

    def embed_now(self, texts: list[str]) -> NDArray[np.float32]:
        """`embed` from synchronous code (a CLI, a job, a thread of the server's pool)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.embed(texts))
        with ThreadPoolExecutor(1) as pool:  # inside a loop's thread: a loop of its own elsewhere
            vectors: NDArray[np.float32] = pool.submit(asyncio.run, self.embed(texts)).result()
            return vectors


def _unit(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: NDArray[np.float32] = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


@dataclass(frozen=True)
class IndexMeta:
    dataset: str  # NAME@VERSION it was built from
    version_id: str
    content_hash: str
    kind: str
    encoder: str = ENCODER
    format: int = FORMAT


def index_key(project_id: str, content_hash: str) -> str:
    return f"{PREFIX}/{project_id}/{content_hash}.{ENCODER}.v{FORMAT}.npz"


class ExampleIndex:
    """Demonstrations of one dataset version and their unit input vectors."""

    def __init__(
        self,
        meta: IndexMeta,
        vectors: NDArray[np.float32],
        rows: NDArray[np.int64],
        ids: list[str],
        inputs: list[str],
        outputs: list[str],
    ) -> None:
        self.meta = meta
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.rows = rows
        self.ids = ids
        self.inputs = inputs
        self.outputs = outputs

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def for_version(
        cls,
        datasets: DatasetService,
        version: VersionInfo,
        *,
        project_id: str,
        encoder: Encoder | None = None,
        progress: Progress | None = None,
    ) -> ExampleIndex:
        """The version's index: from this process's memory, else its artifact, else built (and
        stored) now. Blocking: from async code, run it in a thread."""
        return CACHE.get(datasets, version, project_id=project_id, encoder=encoder, progress=progress)

    # --- search ---------------------------------------------------------------------------------

    def nearest_vector(
        self, query: NDArray[np.float32], k: int, min_similarity: float = -1.0
    ) -> list[Example]:
        """The `k` examples whose inputs are most similar to the unit vector `query`, best first."""
        if k < 1 or not len(self):
            return []
        # einsum's own single-threaded loop, not BLAS: a threaded gemv on a busy 2-core machine
        # spent ~29 ms at 10k examples (threads waiting for cores), einsum ~0.4 ms (fewshot_overhead).
        scores = np.einsum("ij,j->i", self.vectors, query)
        if k < len(scores):
            top = np.argpartition(-scores, k - 1)[:k]
            order = top[np.argsort(-scores[top], kind="stable")]
        else:
            order = np.argsort(-scores, kind="stable")
        return [
            Example(int(self.rows[i]), self.ids[i], self.inputs[i], self.outputs[i], float(scores[i]))
            for i in order
            if scores[i] >= min_similarity
        ]

    async def nearest(
        self, text: str, k: int, min_similarity: float = -1.0, *, encoder: Encoder | None = None
    ) -> list[Example]:
        """The `k` examples whose inputs are most similar to `text`, best first."""
        vector = (await (encoder or default_encoder()).embed([text]))[0]
        return self.nearest_vector(vector, k, min_similarity)

    def nearest_now(self, text: str, k: int, min_similarity: float = -1.0) -> list[Example]:
        """`nearest` from synchronous code."""
        return self.nearest_vector(default_encoder().embed_now([text])[0], k, min_similarity)

    # --- building and storing -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        datasets: DatasetService,
        version: VersionInfo,
        encoder: Encoder,
        progress: Progress | None = None,
    ) -> ExampleIndex:
        if version.rows > MAX_EXAMPLES:
            raise UserError(
                f"dataset {version.ref} has {version.rows:,} records; an example index takes at most "
                f"{MAX_EXAMPLES:,}: curate a smaller set of demonstrations",
                param="fewshot.dataset",
            )
        rows, ids, inputs, outputs = [], [], [], []
        for row, record_id, record in _records(datasets, version):
            pair = demonstration(version.kind, record)
            if pair is not None:
                rows.append(row)
                ids.append(record_id)
                inputs.append(pair[0])
                outputs.append(pair[1])
        if not inputs:
            raise UserError(
                f"dataset {version.ref} ({version.kind} records) has no record with both an input and "
                "an output to demonstrate (e.g. eval cases need `expected`, chats an assistant turn)",
                param="fewshot.dataset",
            )
        chunks = []
        for start in range(0, len(inputs), _CHUNK):
            chunks.append(encoder.embed_now(inputs[start : start + _CHUNK]))
            if progress is not None:
                progress(min(start + _CHUNK, len(inputs)), len(inputs))
        meta = IndexMeta(version.ref, version.id, version.content_hash, version.kind.value, encoder.name)
        return cls(meta, np.concatenate(chunks), np.asarray(rows, dtype=np.int64), ids, inputs, outputs)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            vectors=self.vectors,
            rows=self.rows,
            ids=np.frombuffer(b"".join(bytes.fromhex(i) for i in self.ids), dtype=np.uint8).reshape(-1, 16),
            texts=_json_array({"inputs": self.inputs, "outputs": self.outputs}),
            meta=_json_array(self.meta.__dict__),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ExampleIndex:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            texts = orjson.loads(stored["texts"].tobytes())
            meta = IndexMeta(**orjson.loads(stored["meta"].tobytes()))
            ids = [bytes(row).hex() for row in stored["ids"]]
            return cls(meta, stored["vectors"], stored["rows"], ids, texts["inputs"], texts["outputs"])


def _json_array(value: Any) -> NDArray[np.uint8]:
    return np.frombuffer(orjson.dumps(value), dtype=np.uint8)


def _records(datasets: DatasetService, version: VersionInfo) -> Iterator[tuple[int, str, dict[str, Any]]]:
    hashes = (h.hex() for group in datasets.iter_hashes(version) for h in group.to_pylist())
    row = 0
    for batch in datasets.iter_records(version):
        for record in batch:
            yield row, next(hashes), record
            row += 1


_default: Encoder | None = None


def default_encoder() -> Encoder:
    global _default
    if _default is None:
        _default = Encoder()
    return _default


class IndexCache:
    """Indexes held in this process's memory, newest use last, at most `size` of them; each loaded
    or built once however many calls ask for it at the same time."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._held: OrderedDict[str, ExampleIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def held(self, artifacts: ArtifactStore, version: VersionInfo, *, project_id: str) -> ExampleIndex | None:
        """The version's index if this process holds it; None otherwise (nothing is read)."""
        where = f"{artifacts.url}|{index_key(project_id, version.content_hash)}"
        with self._lock:
            return self._held.get(where)

    def get(
        self,
        datasets: DatasetService,
        version: VersionInfo,
        *,
        project_id: str,
        encoder: Encoder | None = None,
        progress: Progress | None = None,
    ) -> ExampleIndex:
        key = index_key(project_id, version.content_hash)
        where = f"{datasets.artifacts.url}|{key}"
        with self._lock:
            found = self._held.get(where)
            if found is not None:
                self._held.move_to_end(where)
                return found
            building = self._building.setdefault(where, threading.Lock())
        with building:
            with self._lock:
                found = self._held.get(where)
            if found is None:
                found = self._load_or_build(datasets, version, key, encoder, progress)
            with self._lock:
                self._held[where] = found
                self._held.move_to_end(where)
                while len(self._held) > self.size:
                    self._held.popitem(last=False)
                self._building.pop(where, None)
            return found

    @staticmethod
    def _load_or_build(
        datasets: DatasetService,
        version: VersionInfo,
        key: str,
        encoder: Encoder | None,
        progress: Progress | None,
    ) -> ExampleIndex:
        artifacts = datasets.artifacts
        if artifacts.exists(key):
            with artifacts.open_read(key) as handle:
                return ExampleIndex.from_bytes(handle.read())
        index = ExampleIndex.build(datasets, version, encoder or default_encoder(), progress)
        with artifacts.open_write(key) as sink:  # atomic: a reader sees all of it or none
            sink.write(index.to_bytes())
        return index

    def stored(self, datasets: DatasetService, version: VersionInfo, *, project_id: str) -> bool:
        """Whether the version's index is built (in the artifact store)."""
        return datasets.artifacts.exists(index_key(project_id, version.content_hash))

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


CACHE = IndexCache()
