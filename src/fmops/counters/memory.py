"""Counters in this process: for a single server, no services needed.

Every operation runs without awaiting, under one lock, so it is atomic for asyncio tasks and for
threads alike. Memory stays bounded: expired windows and counters are swept periodically, and
cached bytes are evicted least-recently-used beyond `max_bytes`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from fmops.counters.base import (
    EPSILON,
    Counters,
    Hold,
    Increment,
    Window,
    WindowResult,
    retry_after,
)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SWEEP_SECONDS = 30.0


class MemoryCounters(Counters):
    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._sweep_seconds = sweep_seconds
        self._lock = threading.Lock()
        # key -> [bucket index, previous total, current total, expires at]
        self._windows: dict[str, list[float]] = {}
        # key -> (value, expires at)
        self._floats: dict[str, tuple[float, float]] = {}
        # key -> (value, expires at), least recently used first
        self._bytes: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes_size = 0
        self._next_sweep = clock() + sweep_seconds

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cache now."""
        return self._bytes_size

    # --- windows --------------------------------------------------------------------------------

    def _state(self, window: Window, now: float) -> tuple[int, float, float, float]:
        """(bucket index, previous, current, fraction) of a window at `now`."""
        position = now / window.seconds
        index = math.floor(position)
        state = self._windows.get(window.key)
        if state is None:
            return index, 0.0, 0.0, position - index
        bucket = state[0]
        if bucket == index:
            return index, state[1], state[2], position - index
        if bucket == index - 1:
            return index, state[2], 0.0, position - index
        return index, 0.0, 0.0, position - index

    def _store(self, window: Window, index: int, previous: float, current: float) -> None:
        self._windows[window.key] = [index, previous, current, (index + 2) * window.seconds]

    async def hit(self, windows: Sequence[Window]) -> WindowResult:
        with self._lock:
            now = self._tick()
            states = [self._state(w, now) for w in windows]
            usage = tuple([p * (1.0 - f) + c for _, p, c, f in states])
            for i, window in enumerate(windows):
                if usage[i] + window.amount > window.limit + EPSILON:
                    _, previous, current, fraction = states[i]
                    wait = retry_after(
                        previous, current, fraction, window.amount, window.limit, window.seconds
                    )
                    return WindowResult(False, usage, i, wait)
            for window, (index, previous, current, _) in zip(windows, states, strict=True):
                self._store(window, index, previous, current + window.amount)
            return WindowResult(True, tuple([u + w.amount for u, w in zip(usage, windows, strict=True)]))

    async def adjust(self, windows: Sequence[Window]) -> None:
        with self._lock:
            now = self._tick()
            for window in windows:
                index, previous, current, _ = self._state(window, now)
                self._store(window, index, previous, max(current + window.amount, 0.0))

    # --- floats ---------------------------------------------------------------------------------

    async def incr(self, increments: Sequence[Increment]) -> list[float]:
        with self._lock:
            now = self._tick()
            values = []
            for item in increments:
                found = self._floats.get(item.key)
                base = found[0] if found is not None and found[1] > now else 0.0
                value = base + item.amount
                expires = now + item.ttl_seconds if item.ttl_seconds is not None else math.inf
                self._floats[item.key] = (value, expires)
                values.append(value)
            return values

    async def hold(self, holds: Sequence[Hold]) -> tuple[int | None, list[float]]:
        with self._lock:
            now = self._tick()
            found = [self._float(h.spend_key, now) + max(self._float(h.hold_key, now), 0.0) for h in holds]
            for i, (h, value) in enumerate(zip(holds, found, strict=True)):
                if value >= h.limit - EPSILON:
                    return i, found
            for h in holds:
                self._floats[h.hold_key] = (self._float(h.hold_key, now) + h.amount, now + h.ttl_seconds)
            return None, found

    def _float(self, key: str, now: float) -> float:
        found = self._floats.get(key)
        return found[0] if found is not None and found[1] > now else 0.0

    async def get_floats(self, keys: Sequence[str]) -> list[float | None]:
        with self._lock:
            now = self._tick()
            values: list[float | None] = []
            for key in keys:
                found = self._floats.get(key)
                values.append(found[0] if found is not None and found[1] > now else None)
            return values

    async def seed(self, key: str, value: float, ttl_seconds: float | None = None) -> bool:
        with self._lock:
            now = self._tick()
            found = self._floats.get(key)
            if found is not None and found[1] > now:
                return False
            self._floats[key] = (value, now + ttl_seconds if ttl_seconds is not None else math.inf)
            return True

    # --- bytes ----------------------------------------------------------------------------------

    async def get_bytes(self, key: str) -> bytes | None:
        with self._lock:
            found = self._bytes.get(key)
            if found is None:
                return None
            if found[1] <= self._tick():
                self._drop_bytes(key)
                return None
            self._bytes.move_to_end(key)
            return found[0]

    async def set_bytes(self, key: str, value: bytes, ttl_seconds: float) -> None:
        with self._lock:
            now = self._tick()
            self._drop_bytes(key)
            if len(value) > self.max_bytes or ttl_seconds <= 0:
                return
            self._bytes[key] = (value, now + ttl_seconds)
            self._bytes_size += len(value)
            while self._bytes_size > self.max_bytes:
                _, (old, _) = self._bytes.popitem(last=False)
                self._bytes_size -= len(old)

    def _drop_bytes(self, key: str) -> None:
        found = self._bytes.pop(key, None)
        if found is not None:
            self._bytes_size -= len(found[0])

    async def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._windows.pop(key, None)
                self._floats.pop(key, None)
                self._drop_bytes(key)

    # --- housekeeping ---------------------------------------------------------------------------

    def _tick(self) -> float:
        """The time now; sweeps expired entries when it is due. Call with the lock held."""
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_seconds
            self._sweep(now)
        return now

    def _sweep(self, now: float) -> None:
        for key in [k for k, s in self._windows.items() if s[3] <= now]:
            del self._windows[key]
        for key in [k for k, (_, expires) in self._floats.items() if expires <= now]:
            del self._floats[key]
        for key in [k for k, (_, expires) in self._bytes.items() if expires <= now]:
            self._drop_bytes(key)

    def __len__(self) -> int:
        """Entries held (windows, counters and cached values), expired ones not yet swept included."""
        return len(self._windows) + len(self._floats) + len(self._bytes)
