"""How many threads a local engine's next generation should use (to read the prompt and to decode):
the cores no one else is using.

llama.cpp decodes a small model ~1.7x faster on two threads than on one (README,
`local_model_vs_llamacpp.py`), but only when both threads have a core: they meet at a barrier after
every operation, so a thread that loses its core to another process stalls the other, and on a busy
machine two threads decode slower than one. llama-cpp-python's fixed default (half the cores) is the
safe side of that trade; this module decides per generation instead, from what the machine is doing:

- the cores this process may run on,
- less what other processes used over the last half second or more (`/proc/stat`'s busy time less this
  process's own CPU time),
- shared among the local generations running in this process at that moment (an eval of two local
  models runs two at once: one thread each beats two threads taking turns).

Where `/proc/stat` cannot be read (not Linux), `threads()` is None and engines keep their default.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

SAMPLE_SECONDS = 0.5  # the shortest window others' CPU use is measured over
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

_lock = threading.Lock()
_active = 0  # local generations running in this process
_last: tuple[float, float, float] | None = None  # (monotonic, machine busy s, own CPU s)
_others = 0.0  # cores other processes kept busy over the last window


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _busy_seconds() -> float | None:
    """CPU seconds the machine's cores have spent busy since boot (all processes)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already counted in user (and guest_nice in nice): leave those two fields out
    return (sum(ticks[:8]) - idle) / _TICKS


def _sample(now: float) -> float | None:
    """Cores used by other processes over the window ending now (the last value between windows)."""
    global _last, _others
    if _last is not None and now - _last[0] < SAMPLE_SECONDS:
        return _others
    busy = _busy_seconds()
    if busy is None:
        return None
    own = time.process_time()
    if _last is None:  # no window yet: the 1-minute load average, most of it others' until now
        _others = os.getloadavg()[0] if hasattr(os, "getloadavg") else float(cores())
    else:
        elapsed = now - _last[0]
        _others = max(0.0, ((busy - _last[1]) - (own - _last[2])) / elapsed)
    _last = (now, busy, own)
    return _others


def threads() -> int | None:
    """Threads for a generation starting now; None where the machine's load cannot be read."""
    with _lock:
        others = _sample(time.monotonic())
        if others is None:
            return None
        total = cores()
        free = max(1, min(total, round(total - others)))
        return max(1, free // max(1, _active))


@contextlib.contextmanager
def generating() -> Iterator[None]:
    """Around a local generation: counted while it runs, so concurrent ones share the cores."""
    global _active
    with _lock:
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
