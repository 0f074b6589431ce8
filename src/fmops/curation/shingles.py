"""Word splitting, shingles and MinHash signatures for whole batches of documents at once, in numpy.

Hashing each shingle in Python (joining five words into a string, then hashing it) is most of the time a
MinHash deduplication takes; here a batch is one byte buffer: words are hashed from prefix sums of the
bytes, shingles from the word hashes, and the signature is a minimum over (a·x + b) mod 2^64 per
permutation. Every step is a few vector operations over the batch, and numpy releases the GIL, so two
threads use two cores.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

U64 = npt.NDArray[np.uint64]
# Punctuation trimmed from both ends of a word ("hello," -> "hello"; "don't" and "e-mail" stay whole).
PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›—–…¿¡·•"
_ASCII_PUNCTUATION = string.punctuation
_P = np.uint64(0x100000001B3)  # FNV prime: odd, so invertible mod 2^64
_P_INV = np.uint64(pow(0x100000001B3, -1, 2**64))
_SHINGLE_KEYS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63]
    + [0xD6E8FEB86659FD93 + 2 * i for i in range(59)],
    dtype=np.uint64,
)


def words(text: str) -> list[str]:
    """The word splitting every step shares: lower case, split at white space, punctuation trimmed from
    both ends of each word, empty words dropped (`word_hashes` splits a batch the same way in Arrow)."""
    return [w for w in (w.strip(PUNCTUATION) for w in text.lower().split()) if w]


def normalise(text: str) -> str:
    return " ".join(words(text))


def mix(x: U64) -> U64:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class _Powers:
    """P^k and P^-k mod 2^64 for k up to the longest buffer seen; they do not depend on the batch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.up: U64 = np.ones(1, dtype=np.uint64)
        self.down: U64 = np.ones(1, dtype=np.uint64)

    def get(self, n: int) -> tuple[U64, U64]:
        up, down = self.up, self.down
        if len(up) <= n:
            with self.lock, np.errstate(over="ignore"):
                size = max(n + 1, 2 * len(self.up))
                up = np.cumprod(np.full(size, _P, dtype=np.uint64), dtype=np.uint64)
                down = np.cumprod(np.full(size, _P_INV, dtype=np.uint64), dtype=np.uint64)
                up *= _P_INV  # P^0, P^1, ...
                down *= _P
                self.up, self.down = up, down
        return up, down


_POWERS = _Powers()


def _hash_strings(values: pa.StringArray | pa.LargeStringArray) -> U64:
    """Stable 64-bit hashes of each string of an Arrow array (a polynomial over its UTF-8 bytes)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buf, data_buf = values.buffers()
    kind = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=kind)[values.offset : values.offset + len(values) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]] if data_buf else _NO_BYTES
    offsets = offsets - offsets[0]
    up, down = _POWERS.get(len(data))
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum((data + np.uint64(1)) * up[: len(data)], dtype=np.uint64, out=prefix[1:])
        raw = (prefix[offsets[1:]] - prefix[offsets[:-1]]) * down[offsets[:-1]]
        raw += (offsets[1:] - offsets[:-1]).astype(np.uint64)  # the length, so "" and "\0" differ
    return mix(raw)


_NO_BYTES = np.zeros(0, dtype=np.uint8)


def word_hashes(texts: Sequence[str]) -> tuple[U64, npt.NDArray[np.int64]]:
    """64-bit hashes of every word of every text (in order) and each text's word count.

    Arrow splits the batch (without the GIL; its ASCII kernels when the batch is ASCII, twice as fast)
    and every word is hashed from its bytes in one vector pass; a word's hash does not depend on its batch.
    """
    array = pa.array(texts, type=pa.large_string())
    if pc.all(pc.string_is_ascii(array)).as_py() is not False:
        pieces = pc.ascii_split_whitespace(pc.ascii_lower(array))
        flat = pc.ascii_trim(pieces.flatten(), characters=_ASCII_PUNCTUATION)
    else:
        pieces = pc.utf8_split_whitespace(pc.utf8_lower(array))
        flat = pc.utf8_trim(pieces.flatten(), characters=PUNCTUATION)
    lengths = pc.binary_length(flat).to_numpy(zero_copy_only=False)
    hashes = _hash_strings(flat)
    keep = lengths > 0
    doc = np.repeat(np.arange(len(texts)), np.diff(pieces.offsets.to_numpy()))[keep]
    return hashes[keep], np.bincount(doc, minlength=len(texts)).astype(np.int64)


def shingle_hashes(hashes: U64, counts: npt.NDArray[np.int64], n: int) -> tuple[U64, npt.NDArray[np.int64]]:
    """Hashes of each text's word n-grams (a text shorter than n words is one shingle) and their counts."""
    if n > len(_SHINGLE_KEYS):
        raise ValueError(f"shingles of at most {len(_SHINGLE_KEYS)} words")
    first = np.cumsum(counts) - counts
    per_doc = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1)).astype(np.int64)
    # Each window starts at a word with n words of its own text ahead (a short text: its first word).
    starts = np.repeat(first, per_doc) + _ranks(per_doc)
    padded = np.concatenate((hashes, np.zeros(n, dtype=np.uint64)))
    acc = np.zeros(len(starts), dtype=np.uint64)
    short = bool(((counts > 0) & (counts < n)).any())
    width = np.repeat(np.minimum(counts, n), per_doc) if short else None
    with np.errstate(over="ignore"):
        for j in range(n):
            term = padded[starts + j] * _SHINGLE_KEYS[j]
            acc += term if width is None else np.where(j < width, term, np.uint64(0))
    return mix(acc), per_doc


def _ranks(sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0, 1, ..., size-1 for each size, concatenated."""
    total = int(sizes.sum())
    return np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)


U32 = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class Permutations:
    """(a·x + b) mod 2^32 with odd a: 32-bit values, as datasketch's, halve the memory each pass reads."""

    a: U32
    b: U32

    @classmethod
    def make(cls, num_perm: int, seed: int) -> Permutations:
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
        return cls(a, b)


EMPTY = np.iinfo(np.uint32).max
# Shingles per block of `signatures`: 64k 32-bit values and their buffer, 512 KB, stay in L2.
BLOCK_SHINGLES = 1 << 16


def signatures(
    shingles: U64, per_doc: npt.NDArray[np.int64], perms: Permutations, block: int = BLOCK_SHINGLES
) -> U32:
    """MinHash signatures (documents x permutations); a text without words gets the all-max signature.

    One permutation at a time over a block of documents: a 1-D `minimum.reduceat` is ten times faster
    than the same reduction over a (shingles x permutations) block. A block holds about `block`
    shingles (whole documents), so that its values and their buffer stay in the core's cache over
    every permutation (a 2,000-document batch at once spilled from it: this step took 1.5x as long).
    """
    out = np.full((len(per_doc), len(perms.a)), EMPTY, dtype=np.uint32)
    has = per_doc > 0
    if not has.any():
        return out
    counts = per_doc[has]
    ends = np.cumsum(counts)
    starts = ends - counts
    x = (shingles >> np.uint64(32)).astype(np.uint32)  # the mixed hash's high half
    cols = np.empty((len(perms.a), len(counts)), dtype=np.uint32)
    buffer = np.empty(min(len(x), block), dtype=np.uint32)  # grown for a document beyond `block`
    first = 0
    with np.errstate(over="ignore"):
        while first < len(counts):
            # The documents whose shingles fit in `block` (at least one document).
            last = max(int(np.searchsorted(ends, starts[first] + block, side="right")), first + 1)
            low, high = int(starts[first]), int(ends[last - 1])
            if high - low > len(buffer):
                buffer = np.empty(high - low, dtype=np.uint32)
            values, scratch = x[low:high], buffer[: high - low]
            offsets = starts[first:last] - low
            for j, (a, b) in enumerate(zip(perms.a, perms.b, strict=True)):
                np.multiply(values, a, out=scratch)
                np.add(scratch, b, out=scratch)
                np.minimum.reduceat(scratch, offsets, out=cols[j, first:last])
            first = last
    out[has] = cols.T
    return out


def band_hashes(sigs: U32, bands: int, rows: int) -> U64:
    """One 64-bit hash per band (documents x bands)."""
    shaped = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        acc = (shaped * _SHINGLE_KEYS[:rows][None, None, :]).sum(axis=2, dtype=np.uint64)
    return mix(acc)


def jaccard(a: str, b: str, n: int) -> float:
    """Exact Jaccard similarity of two texts' word n-gram sets (for reports, not for the bulk)."""

    def grams(text: str) -> set[tuple[str, ...]]:
        w = words(text)
        return {tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))} if w else set()

    sa, sb = grams(a), grams(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0
