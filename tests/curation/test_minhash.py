"""MinHash sketches do not depend on how the work is cut: blocks of the signature pass, chunks of the
input, one thread or two, give the same arrays in the same order."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from fmops.curation import minhash
from fmops.curation.minhash import MinHasher
from fmops.curation.shingles import shingle_hashes, signatures, word_hashes


def texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    out = [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(n)]
    out[5] = ""  # no words: the all-max signature
    out[6] = "two words"  # shorter than a shingle
    out[7] = " ".join(rng.choices(words, k=3_000))  # more shingles than a small block holds
    return out


@pytest.mark.parametrize("block", [1, 64, 1_000, 1 << 40])
def test_signatures_are_the_same_whatever_the_block(block: int) -> None:
    hasher = MinHasher(64, 8, 8, 5)
    hashes, counts = word_hashes(texts(300))
    shingles, per_doc = shingle_hashes(hashes, counts, 5)
    whole = signatures(shingles, per_doc, hasher.perms, block=1 << 40)
    assert (whole[5] == np.iinfo(np.uint32).max).all()
    assert np.array_equal(signatures(shingles, per_doc, hasher.perms, block=block), whole)


@pytest.mark.parametrize("threads", [1, 2])
def test_sketch_all_matches_one_sketch_whatever_the_chunks_and_threads(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(minhash, "CHUNK_CHARS", 2_000)  # many chunks, some of one long text
    monkeypatch.setattr(minhash, "_cores", lambda: 2)  # two idle cores, whatever this machine's load
    monkeypatch.setattr(minhash.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    hasher = MinHasher(64, 8, 8, 5)
    docs = texts(500)
    bands, low = hasher.sketch(docs)
    batches = [docs[i : i + 170] for i in range(0, len(docs), 170)]
    parts = list(hasher.sketch_all(batches, threads))
    assert len(parts) > 2 * len(batches)
    assert np.array_equal(np.concatenate([b for b, _ in parts]), bands)
    assert np.array_equal(np.concatenate([lo for _, lo in parts]), low)


@pytest.mark.parametrize(
    ("cores", "load", "pool"), [(1, 0.0, False), (2, 1.5, False), (2, 0.5, True), (16, 3.0, True)]
)
def test_a_second_thread_only_on_an_idle_core(
    cores: int, load: float, pool: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    real = minhash.ThreadPoolExecutor

    def counted(workers: int, **kwargs: Any) -> Any:
        started.append(workers)
        return real(workers, **kwargs)

    monkeypatch.setattr(minhash, "ThreadPoolExecutor", counted)
    monkeypatch.setattr(minhash, "_cores", lambda: cores)
    monkeypatch.setattr(minhash.os, "getloadavg", lambda: (load, load, load))
    hasher = MinHasher(64, 8, 8, 5)
    docs = texts(50)
    (bands, _low), *rest = hasher.sketch_all([docs], threads=2)
    assert rest == []
    assert np.array_equal(bands, hasher.sketch(docs)[0])
    assert started == ([2] if pool else [])
