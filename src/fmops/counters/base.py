"""The counters interface: rate-limit windows, float counters and a byte cache behind one API.

Budgets hold a call's estimated cost while it runs (`hold`), so that calls racing for a budget's
last units cannot all pass its check before any of them has spent.

Two backends implement it: `MemoryCounters` (one process) and `RedisCounters` (shared by every
replica). Services depend on `Counters`, never on a backend.

Rate limits use a sliding-window counter: each window keeps the totals of the current and the
previous fixed bucket, and estimates the usage over the last `seconds` as
`previous * (1 - elapsed fraction of the current bucket) + current`. It needs two numbers per key
whatever the traffic, is exact while the previous bucket is empty, and never lets a burst at a
bucket boundary through twice (as a plain fixed window does).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

# Float amounts (tokens, money) are compared with a little slack so that 0.1 + 0.2 fits in 0.3.
# Window and Increment are named tuples: they are built on every request, and tuples build fastest.
EPSILON = 1e-9


class Window(NamedTuple):
    """`amount` to add to the sliding window `key` of `seconds`, refused above `limit`."""

    key: str
    amount: float
    seconds: float
    limit: float = math.inf


class Hold(NamedTuple):
    """Hold `amount` on the float counter `hold_key` while `spend_key` plus what is held stays below
    `limit`; the hold counter expires `ttl_seconds` after its last change (a process that died
    holding something does not hold it for ever)."""

    spend_key: str
    hold_key: str
    amount: float
    limit: float
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class WindowResult:
    """The outcome of `Counters.hit`.

    `usage` holds each window's estimated usage: after the hit when it was allowed, without it
    when it was refused. `blocked` is the index of the first window that refused; `retry_after`
    the seconds until that window would take the amount (`math.inf` when the amount is larger
    than the limit itself, so waiting cannot help).
    """

    allowed: bool
    usage: tuple[float, ...]
    blocked: int | None = None
    retry_after: float = 0.0


class Increment(NamedTuple):
    """Add `amount` to the float counter `key`; the counter expires `ttl_seconds` after its last change."""

    key: str
    amount: float
    ttl_seconds: float | None = None


class Counters(ABC):
    """Atomic counters shared by every request that reaches this backend.

    Keys are plain strings; a backend may add its own prefix. All methods are safe to call from
    many tasks at once.
    """

    @abstractmethod
    async def hit(self, windows: Sequence[Window]) -> WindowResult:
        """All or nothing: add every window's amount if each stays within its limit, else add none."""

    @abstractmethod
    async def adjust(self, windows: Sequence[Window]) -> None:
        """Add amounts (negative ones too) to windows' current buckets without checking limits.

        A bucket never goes below zero. Used to correct a reservation once the real amount is known.
        """

    @abstractmethod
    async def incr(self, increments: Sequence[Increment]) -> list[float]:
        """Add to float counters (created at zero); return their new values."""

    @abstractmethod
    async def hold(self, holds: Sequence[Hold]) -> tuple[int | None, list[float]]:
        """All or nothing: add every hold's amount to its hold counter if, for each, the spend plus
        what is held (a negative hold counts as none) is below its limit; else add none.

        Returns the index of the first hold refused (None when all were added) and, for each,
        spend plus held as found before adding. Give a hold back with `incr` of minus its amount.
        """

    @abstractmethod
    async def get_floats(self, keys: Sequence[str]) -> list[float | None]:
        """Current values of float counters; None for a counter that does not exist (or expired)."""

    @abstractmethod
    async def seed(self, key: str, value: float, ttl_seconds: float | None = None) -> bool:
        """Create the float counter `key` at `value` unless it exists; True if it was created."""

    @abstractmethod
    async def get_bytes(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""

    @abstractmethod
    async def set_bytes(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key` for `ttl_seconds`; it may be evicted earlier under memory pressure."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Forget keys of any kind."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections."""

    async def hit_one(self, key: str, amount: float, *, seconds: float, limit: float) -> WindowResult:
        """`hit` with a single window."""
        return await self.hit([Window(key, amount, seconds, limit)])

    async def add(self, key: str, amount: float, ttl_seconds: float | None = None) -> float:
        """`incr` of a single counter."""
        return (await self.incr([Increment(key, amount, ttl_seconds)]))[0]


def retry_after(
    previous: float, current: float, fraction: float, amount: float, limit: float, seconds: float
) -> float:
    """Seconds until a sliding window with these totals would accept `amount` (no other traffic).

    `fraction` is how far into the current bucket we are (0 <= fraction < 1).
    """
    if amount > limit + EPSILON:
        return math.inf
    room = limit - current - amount
    if room >= -EPSILON and previous > 0:
        # Fits once the previous bucket's weight has decayed enough, within this bucket.
        needed = 1.0 - max(room, 0.0) / previous
        return max(needed - fraction, 0.0) * seconds
    # Needs the next bucket, where this bucket's total becomes the decaying previous one.
    until_next = (1.0 - fraction) * seconds
    if current <= 0:
        return until_next
    needed = max(1.0 - (limit - amount) / current, 0.0)
    return until_next + needed * seconds
