"""Near-duplicate detection with MinHash LSH, in two passes over the data and ~256 bytes per document.

Pass one computes, per document, one hash per LSH band and the low byte of each MinHash value
(b-bit MinHash, Li & König 2010). Documents that share a band hash are candidates; a candidate pair is
a near-duplicate when its estimated Jaccard similarity reaches the threshold (the b-bit estimate
corrects for bytes that match by chance). Near-duplicates form clusters (connected components) and
each cluster keeps its first document; pass two drops the rest. No text is held between passes.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fmops.curation.shingles import Permutations, band_hashes, shingle_hashes, signatures, word_hashes

I64 = npt.NDArray[np.int64]
# Characters of text sketched at once: ~500 documents of 150 words, whose arrays stay in cache.
CHUNK_CHARS = 1 << 19


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The (bands, rows) whose S-curve best separates pairs above `threshold` from those below it: the
    least weighted false-positive plus false-negative area, as datasketch chooses them, but with false
    negatives weighing four times as much: candidates are checked against the threshold afterwards,
    so a false positive costs a comparison while a false negative is a duplicate kept."""
    xs = np.linspace(0.0, 1.0, 201)
    best, best_error = (1, num_perm), math.inf
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        p = 1 - (1 - xs**rows) ** bands
        fp = np.trapezoid(np.where(xs < threshold, p, 0.0), xs)
        fn = np.trapezoid(np.where(xs >= threshold, 1 - p, 0.0), xs)
        error = 0.2 * fp + 0.8 * fn
        if error < best_error:
            best, best_error = (bands, rows), float(error)
    return best


@dataclass
class Sketches:
    """Pass one's result: per document, its band hashes and the low byte of each MinHash value."""

    bands: npt.NDArray[np.uint64]
    low_bytes: npt.NDArray[np.uint8]
    count: int = 0

    @classmethod
    def empty(cls, capacity: int, bands: int, num_perm: int) -> Sketches:
        return cls(np.zeros((capacity, bands), np.uint64), np.zeros((capacity, num_perm), np.uint8))

    def add(self, bands: npt.NDArray[np.uint64], low: npt.NDArray[np.uint8]) -> None:
        end = self.count + len(bands)
        if end > len(self.bands):  # the input was longer than announced: grow by half
            grow = max(end, len(self.bands) * 3 // 2 + 1024)
            self.bands = np.resize(self.bands, (grow, self.bands.shape[1]))
            self.low_bytes = np.resize(self.low_bytes, (grow, self.low_bytes.shape[1]))
        self.bands[self.count : end] = bands
        self.low_bytes[self.count : end] = low
        self.count = end


@dataclass(frozen=True)
class MinHasher:
    num_perm: int
    bands: int
    rows: int
    shingle: int
    seed: int = 0
    perms: Permutations = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "perms", Permutations.make(self.num_perm, self.seed))

    def sketch(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
        hashes, counts = word_hashes(texts)
        shingles, per_doc = shingle_hashes(hashes, counts, self.shingle)
        sigs = signatures(shingles, per_doc, self.perms)
        return band_hashes(sigs, self.bands, self.rows), (sigs & np.uint32(0xFF)).astype(np.uint8)

    def sketch_all(
        self, batches: Iterable[Sequence[str]], threads: int = 2
    ) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]]:
        """Sketches of the texts, in order, in chunks of about `CHUNK_CHARS` characters, `threads`
        chunks at a time (numpy and Arrow release the GIL); at most 2 x threads chunks in flight.

        Chunks, not the curation batches (2,000 records), keep each step's arrays in the core's
        cache: whole batches spilled them, and two threads then cost 13% more CPU than one. Even so,
        a second thread pays only on a core nobody else uses: see `_worth_starting`.
        """
        chunks = _chunks(batches, CHUNK_CHARS)
        threads = _worth_starting(threads)
        if threads <= 1:
            for texts in chunks:
                yield self.sketch(texts)
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="fmops-minhash") as pool:
            pending: deque[Future[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]]] = deque()
            for texts in chunks:
                pending.append(pool.submit(self.sketch, texts))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worth_starting(threads: int) -> int:
    """Of `threads` asked for, how many to run: no more than the cores this process may use, and
    beyond the first, one per core left idle by the 1-minute load average. On a busy machine the
    extra threads get no core of their own, only the pool's overhead (GIL hand-offs, page faults):
    on 2 busy cores two threads sketched at 0.8x the speed of one."""
    cores = _cores()
    if threads <= 1 or cores <= 1:
        return 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores - 1
    return max(1, min(threads, cores, 1 + int(idle)))


def _chunks(batches: Iterable[Sequence[str]], chars: int) -> Iterator[Sequence[str]]:
    """The texts of `batches`, in order, in runs of about `chars` characters (a longer text alone)."""
    for texts in batches:
        start = size = 0
        for end, text in enumerate(texts, 1):
            size += len(text)
            if size >= chars:
                yield texts[start:end]
                start, size = end, 0
        if start < len(texts):
            yield texts[start:]


def estimate_jaccard(low: npt.NDArray[np.uint8], a: I64, b: I64) -> npt.NDArray[np.float64]:
    """Jaccard estimates from the low bytes: equal bytes are J + (1 - J) / 256 of the permutations."""
    agree = (low[a] == low[b]).mean(axis=1)
    return np.clip((agree - 1 / 256) / (1 - 1 / 256), 0.0, 1.0)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Clusters:
    keep: npt.NDArray[np.bool_]
    kept_as: I64  # for each document, the document its cluster keeps (itself when kept)
    pairs: int  # candidate pairs that passed the threshold


def cluster(sketches: Sketches, threshold: float) -> Clusters:
    n = sketches.count
    bands, low = sketches.bands[:n], sketches.low_bytes[:n]
    found_a: list[I64] = []
    found_b: list[I64] = []
    index = np.arange(n)
    for band in range(bands.shape[1]):
        order = np.argsort(bands[:, band], kind="stable")
        values = bands[order, band]
        same = values[1:] == values[:-1]
        if not same.any():
            continue
        run_start = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), index, 0))
        first = order[run_start]
        member = first != order
        # Each member against its bucket's first document and against its neighbour in the bucket.
        a = np.concatenate((first[member], order[:-1][same]))
        b = np.concatenate((order[member], order[1:][same]))
        similar = estimate_jaccard(low, a, b) >= threshold
        found_a.append(a[similar])
        found_b.append(b[similar])
    a = np.concatenate(found_a) if found_a else np.zeros(0, np.int64)
    b = np.concatenate(found_b) if found_b else np.zeros(0, np.int64)
    if len(a) == 0:
        return Clusters(np.ones(n, np.bool_), index, 0)
    kept_as = components(n, a, b)
    return Clusters(kept_as == index, kept_as, len(np.unique(a * n + b)))


def components(n: int, a: I64, b: I64) -> I64:
    """For each of n nodes, the smallest node of its connected component (edges a[i]-b[i]): labels
    take the minimum across each edge, then jump to their label's label, until nothing changes."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        while True:  # pointer jumping: a chain of labels collapses in log steps
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels
